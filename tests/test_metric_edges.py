"""The edges of the measures and of their data: boundaries that count (<=, >=), refusals with
their messages, NaN and -inf on either side of a KL, how the sample-quality measure draws and
clamps its samples, the toy distributions' sizes and the CoNLL reader's messages (surviving
mutants of src/metrics and src/data)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from src.data.toy_distributions import Checkerboard, EightGaussians, Moons, Rings
from src.metrics.sample_quality import ClassifierFeatures, SampleQuality
from src.metrics.toy2d import grid_points, kl_on_grid, mode_coverage, mode_regions

MODES = torch.tensor([[0.0, 0.0], [10.0, 0.0]])


def test_a_sample_exactly_at_the_quality_radius_is_close_and_a_share_exactly_at_the_bar_covers():
    # 10 samples, 2 modes, min_share 0.4: a mode needs 0.4 * 10 / 2 = 2 close samples
    at_radius = [[0.0, 3.0], [0.0, -3.0]]  # distance 3 = n_std * scale exactly
    far = [[5.0, 0.0]] * 7 + [[10.0, 0.0]]
    out = mode_coverage(torch.tensor(at_radius + far), MODES, scale=1.0, min_share=0.4)
    assert out["high_quality"] == pytest.approx(0.3)  # the two at the radius and the one on mode 1
    assert out["modes_covered"] == 1.0 and out["mode_share"] == 0.5
    with pytest.raises(ValueError, match=r"^mode_coverage needs a distribution with modes "):
        mode_coverage(torch.zeros(3, 2), torch.zeros(0, 2), scale=1.0)
    one = mode_coverage(torch.zeros(4, 2), MODES[:1], scale=1.0)  # a single mode is fine
    assert one["modes_covered"] == 1.0


def test_a_point_exactly_at_the_region_radius_belongs_to_its_mode() -> None:
    points = torch.tensor([[0.0, 2.0], [0.0, 2.5], [10.0, 0.0]])
    assert mode_regions(points, MODES, radius=2.0).tolist() == [0, 2, 1]


def test_a_grid_of_one_cell_and_of_none() -> None:
    xs, ys, points = grid_points((0.0, 2.0), 1)
    assert xs.tolist() == ys.tolist() == [1.0] and points.tolist() == [[[1.0, 1.0]]]
    with pytest.raises(ValueError, match=r"^grid size must be >= 1, got 0$"):
        grid_points((0.0, 1.0), 0)
    assert grid_points((0.0, 1.0))[0].shape == (200,)


def test_kl_on_grid_nan_or_minus_infinity_on_either_side() -> None:
    p, q = torch.zeros(2, 2), torch.zeros(2, 2)
    nan = torch.tensor([[math.nan, 0.0], [0.0, 0.0]])
    assert math.isnan(kl_on_grid(nan, q)) and math.isnan(kl_on_grid(p, nan))
    hole = torch.tensor([[-math.inf, 0.0], [0.0, 0.0]])
    assert kl_on_grid(p, hole) == math.inf  # the model misses a cell the truth has
    assert kl_on_grid(hole, q) == pytest.approx(math.log(4 / 3))
    with pytest.raises(ValueError, match=r"^the true density is zero on every grid cell$"):
        kl_on_grid(torch.full((2, 2), -math.inf), q)


class _Net(nn.Module):
    """Three features of an image: its mean, max and min; a dropout that eval mode switches off."""

    feature_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x.flatten(1))
        return torch.stack([x.mean(1), x.amax(1), x.amin(1)], 1)


def _measure() -> SampleQuality:
    quality = SampleQuality(ClassifierFeatures(_Net()), kid_subset_size=50, kid_subsets=5)
    quality.set_reference(torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    return quality


def test_the_features_stay_in_eval_mode_and_the_kid_defaults() -> None:
    features = ClassifierFeatures(_Net())
    features.train()
    assert not features.training and not features.net.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchmetrics' note on keeping features is silenced
        quality = SampleQuality(features)
    assert (quality.kid.subsets, quality.kid.subset_size) == (100, 1000)
    with pytest.raises(RuntimeError, match=r"^set_reference\(real images\) before measuring "):
        quality(lambda n, g: torch.rand(n, 1, 4, 4), 10)


def test_samples_are_drawn_in_batches_from_one_seeded_generator_and_clamped() -> None:
    quality, calls = _measure(), []

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        calls.append((n, generator.initial_seed()))
        return torch.rand(n, 1, 4, 4, generator=generator)

    first = quality(sample, 1200)
    assert calls == [(500, 0), (500, 0), (200, 0)]
    assert quality(sample, 1200)["fid"] == first["fid"]  # the same draws (KID subsets vary)
    calls.clear()
    quality(sample, 30, seed=7, batch_size=20)
    assert calls == [(20, 7), (10, 7)]
    bright = quality(lambda n, g: torch.full((n, 1, 4, 4), 2.0), 60)
    white = quality(lambda n, g: torch.ones(n, 1, 4, 4), 60)
    dark = quality(lambda n, g: torch.full((n, 1, 4, 4), -1.0), 60)
    black = quality(lambda n, g: torch.zeros(n, 1, 4, 4), 60)
    assert bright["fid"] == pytest.approx(white["fid"]) and dark["fid"] == pytest.approx(
        black["fid"]
    )


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Rings(n_rings=0), "n_rings"),
        (lambda: Rings(radius=0.0), "radius"),
        (lambda: Rings(std=0.0), "std"),
        (lambda: Checkerboard(n_squares=0), "n_squares"),
        (lambda: Checkerboard(half_width=0.0), "half_width"),
        (lambda: Moons(scale_factor=0.0), "scale_factor"),
        (lambda: Moons(std=-1.0), "std"),
    ],
)
def test_every_size_of_a_toy_distribution_must_be_positive(make, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be > 0, got "):
        make()


def test_zero_samples_are_an_empty_batch_and_fewer_are_refused() -> None:
    x, labels = EightGaussians().sample(0, torch.Generator().manual_seed(0))
    assert x.shape == (0, 2) and labels.shape == (0,)
    with pytest.raises(ValueError, match=r"^number of samples must be >= 0, got -1$"):
        EightGaussians().sample(-1, torch.Generator())


def test_the_conll_reader_says_what_is_missing_word_for_word(tmp_path: Path) -> None:
    from src.data.tagging import ConllDataModule
    from src.utils.errors import UserError

    with pytest.raises(UserError) as err:
        ConllDataModule().setup()
    assert str(err.value) == "data=conll needs data.train_file=<path to a CoNLL file>."
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n")
    with pytest.raises(UserError) as err:
        ConllDataModule(train_file=str(empty)).setup()
    assert str(err.value) == (
        f"data.train_file={empty} holds no sentences (one token per line, a blank line between "
        "sentences); pass a CoNLL file with data in it."
    )
    bad = tmp_path / "pos.conll"
    bad.write_text("John NNP\n")
    with pytest.raises(UserError) as err:
        ConllDataModule(train_file=str(bad)).setup()
    assert str(err.value).endswith("; pass data.scheme=null for tags without entity spans.")
