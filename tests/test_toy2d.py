"""Tests of the 2-d toy distributions, the grid KL and the toy DataModule."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from src.data.toy2d import Toy2dDataModule
from src.data.toy_distributions import (
    Checkerboard,
    EightGaussians,
    Moons,
    Rings,
    Toy2dDistribution,
    available_distributions,
    make_distribution,
)
from src.metrics.toy2d import grid_log_density, grid_points, kl_on_grid

NAMES = ["8gaussians", "rings", "checkerboard", "moons"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cell_masses(dist: Toy2dDistribution, cells: int, sub: int) -> torch.Tensor:
    """True probability of each cell of a cells x cells grid over dist.bounds (rows are y),
    integrated by the midpoint rule on sub x sub points per cell."""
    n = cells * sub
    lo, hi = dist.bounds
    _, _, logp = grid_log_density(dist, n)
    fine_area = ((hi - lo) / n) ** 2
    return logp.exp().reshape(cells, sub, cells, sub).sum(dim=(1, 3)) * fine_area


def _histogram(
    x: torch.Tensor, bounds: tuple[float, float], cells: int
) -> tuple[torch.Tensor, int]:
    """Counts per cell (rows are y) of the points inside the box, and the number outside it."""
    lo, hi = bounds
    idx = torch.floor((x.double() - lo) / (hi - lo) * cells).long()
    inside = ((idx >= 0) & (idx < cells)).all(dim=-1)
    flat = idx[inside, 1] * cells + idx[inside, 0]
    counts = torch.bincount(flat, minlength=cells * cells).reshape(cells, cells)
    return counts, int((~inside).sum())


def _tv_samples_vs_density(dist: Toy2dDistribution, x: torch.Tensor, cells: int = 20) -> float:
    masses = _cell_masses(dist, cells, sub=10)
    counts, outside = _histogram(x, dist.bounds, cells)
    n = x.shape[0]
    mass_outside = max(0.0, 1.0 - float(masses.sum()))
    tv = (counts / n - masses).abs().sum() + abs(outside / n - mass_outside)
    return 0.5 * float(tv)


# ----------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name: str) -> None:
    dist = make_distribution(name)
    # 150 cells: the checkerboard's square edges cut through grid cells, so it is approximate there
    n = 150
    lo, hi = dist.bounds
    _, _, logp = grid_log_density(dist, n)
    total = float(logp.exp().sum()) * ((hi - lo) / n) ** 2
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_samples_agree_with_density(name: str) -> None:
    dist = make_distribution(name)
    x, labels = dist.sample(200_000, _gen(1))
    assert x.shape == (200_000, 2) and x.dtype == torch.float32
    assert labels.shape == (200_000,) and labels.dtype == torch.long
    assert int(labels.min()) == 0 and int(labels.max()) == dist.num_components - 1
    freq = torch.bincount(labels, minlength=dist.num_components) / labels.numel()
    assert torch.allclose(freq, torch.full_like(freq, 1.0 / dist.num_components), atol=0.01)
    # Sampling noise alone gives TV ~0.01 here; doubling the std (or halving it) gives > 0.1.
    assert _tv_samples_vs_density(dist, x) < 0.03


def test_tv_check_detects_a_wrong_density() -> None:
    # the comparison used above must be able to fail: samples of a twice-wider mixture
    x, _ = EightGaussians(std=0.2).sample(200_000, _gen(1))
    assert _tv_samples_vs_density(EightGaussians(), x) > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_shapes_dtypes_and_bad_input(name: str) -> None:
    dist = make_distribution(name)
    x, _ = dist.sample(12, _gen(0))
    lp32 = dist.log_prob(x.reshape(3, 4, 2))
    assert lp32.shape == (3, 4) and lp32.dtype == torch.float32
    lp64 = dist.log_prob(x.double())
    assert lp64.shape == (12,) and lp64.dtype == torch.float64
    assert torch.allclose(lp32.reshape(-1).double(), lp64, atol=1e-4)
    assert torch.isfinite(lp64).all()  # samples lie where the density is positive
    far = dist.log_prob(torch.tensor([[50.0, -50.0], [math.inf, 0.0]]))
    assert torch.isneginf(far[1]) and (far[0] < -100 or torch.isneginf(far[0]))
    with pytest.raises(ValueError, match="shape"):
        dist.log_prob(torch.zeros(5, 3))


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_deterministic_per_generator(name: str) -> None:
    dist = make_distribution(name)
    a, la = dist.sample(100, _gen(7))
    b, lb = dist.sample(100, _gen(7))
    c, _ = dist.sample(100, _gen(8))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_eight_gaussians_matches_torch_mixture() -> None:
    dist = EightGaussians(radius=2.0, std=0.1)
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    assert torch.allclose(dist.modes.double(), centres, atol=1e-6)
    assert dist.modes.shape == (8, 2) and dist.scale == 0.1
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.full((8,), 1 / 8, dtype=torch.float64)),
        torch.distributions.Independent(
            torch.distributions.Normal(centres, torch.full_like(centres, 0.1)), 1
        ),
    )
    x = torch.cat(
        [
            torch.empty(500, 2, dtype=torch.float64).uniform_(-2.6, 2.6, generator=_gen(3)),
            dist.sample(500, _gen(4))[0].double(),
        ]
    )
    assert torch.allclose(dist.log_prob(x), mixture.log_prob(x), rtol=1e-9, atol=1e-6)
    # labels are the component: with std 0.1 every sample is nearest to its own centre
    xs, labels = dist.sample(10_000, _gen(5))
    nearest = torch.cdist(xs.double(), centres).argmin(dim=-1)
    assert torch.equal(nearest, labels)


def _exact_radii(dist: Rings) -> np.ndarray:
    return dist.radius * np.arange(1, dist.n_rings + 1) / dist.n_rings


def _rings_radial_cdf(dist: Rings, std: float) -> Callable[[np.ndarray], np.ndarray]:
    radii = _exact_radii(dist)

    def cdf(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)[..., None]
        folded = stats.foldnorm.cdf(r, c=radii / std, scale=std)
        return folded.mean(axis=-1)

    return cdf


def test_rings_radial_marginal_ks() -> None:
    dist = Rings()
    x, labels = dist.sample(20_000, _gen(11))
    rho = torch.linalg.vector_norm(x.double(), dim=-1).numpy()
    assert stats.kstest(rho, _rings_radial_cdf(dist, dist.std)).pvalue > 1e-3
    # the test has power: a 50% wider radial profile is rejected outright
    assert stats.kstest(rho, _rings_radial_cdf(dist, 1.5 * dist.std)).pvalue < 1e-6
    # angles are uniform
    angle = torch.atan2(x[:, 1], x[:, 0]).double().numpy()
    assert stats.kstest(angle, stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf).pvalue > 1e-3
    # labels are the ring: nearest radius for all but a few 4-sigma outliers
    nearest = (torch.from_numpy(rho)[:, None] - dist.radii.double()).abs().argmin(dim=-1)
    assert float((nearest == labels).double().mean()) > 0.999


def test_rings_log_prob_polar() -> None:
    dist = Rings(n_rings=3, radius=2.0, std=0.08)
    r = torch.linspace(0.01, 2.5, 200, dtype=torch.float64)
    radii = _exact_radii(dist)
    assert np.allclose(dist.radii.numpy(), radii)
    folded = stats.foldnorm.pdf(r.numpy()[:, None], c=radii / dist.std, scale=dist.std)
    radial = torch.from_numpy(folded.mean(axis=-1))
    for theta in (0.0, 0.7, 2.0, -2.9):
        pts = torch.stack([r * math.cos(theta), r * math.sin(theta)], dim=-1)
        density = dist.log_prob(pts).exp()
        # radial density = circumference * density
        assert torch.allclose(2 * math.pi * r * density, radial, rtol=1e-9, atol=1e-300)
    assert torch.isfinite(dist.log_prob(torch.zeros(1, 2))).all()
    assert dist.modes.shape == (0, 2)


def test_checkerboard_log_prob_values() -> None:
    dist = Checkerboard()
    log8 = -math.log(8.0)
    pts = torch.tensor(
        [
            [-1.5, -1.5],  # (0, 0) black
            [-0.5, -1.5],  # (1, 0) white
            [-0.5, -0.5],  # (1, 1) black
            [0.5, 1.5],  # (2, 3) white
            [1.5, 1.5],  # (3, 3) black
            [2.5, 0.0],  # outside
            [-1.5, -2.01],  # outside
        ],
        dtype=torch.float64,
    )
    inf = math.inf
    expected = torch.tensor([log8, -inf, log8, -inf, log8, -inf, -inf], dtype=torch.float64)
    assert torch.equal(dist.log_prob(pts), expected)
    assert dist.bounds == (-2.0, 2.0) and dist.num_components == 8
    # labels index the black squares, and every sample lies in its square
    x, labels = dist.sample(5000, _gen(2))
    col, row = torch.floor(x.double() + 2.0).long().unbind(-1)
    assert torch.equal((col + row) % 2, torch.zeros_like(col))
    black = [(i, j) for j in range(4) for i in range(4) if (i + j) % 2 == 0]
    square = torch.tensor([black.index((int(i), int(j))) for i, j in zip(col, row, strict=True)])
    assert torch.equal(square, labels)


def test_moons_quadrature_converged_and_label_means() -> None:
    dist = Moons()
    _, _, pts = grid_points(dist.bounds, 40)
    fine = Moons(n_panels=400).log_prob(pts)
    assert (dist.log_prob(pts) - fine).abs().max() < 1e-5
    coarse = Moons(n_panels=4).log_prob(pts)
    assert (coarse - fine).abs().max() > 1e-2  # the comparison would notice a poor rule
    x, labels = dist.sample(100_000, _gen(9))
    upper = torch.tensor([-0.5, 2 / math.pi - 0.25]) * 1.5
    lower = torch.tensor([0.5, 0.25 - 2 / math.pi]) * 1.5
    assert torch.allclose(x[labels == 0].mean(0), upper, atol=0.01)
    assert torch.allclose(x[labels == 1].mean(0), lower, atol=0.01)


def test_make_distribution_kwargs_and_unknown_name() -> None:
    dist = make_distribution("8gaussians", radius=3.0, std=0.2)
    assert torch.allclose(torch.linalg.vector_norm(dist.modes, dim=-1), torch.full((8,), 3.0))
    assert dist.scale == 0.2 and dist.bounds[1] > 3.0
    assert sorted(available_distributions()) == sorted(NAMES)
    with pytest.raises(ValueError, match="unknown toy distribution 'spiral'") as info:
        make_distribution("spiral")
    for name in NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="std"):
        make_distribution("rings", std=-1.0)


# ----------------------------------------------------------------------------- grid and KL


def test_grid_orientation() -> None:
    dist = Moons()  # not symmetric under x <-> y
    xs, ys, logp = grid_log_density(dist, 40)
    assert xs.shape == ys.shape == (40,) and logp.shape == (40, 40)
    h = (dist.bounds[1] - dist.bounds[0]) / 40
    assert xs[0] == pytest.approx(dist.bounds[0] + h / 2)
    for i, j in [(3, 30), (25, 7), (20, 21)]:
        direct = dist.log_prob(torch.stack([xs[j], ys[i]]))
        assert float(logp[i, j]) == pytest.approx(float(direct), rel=1e-12)


def _gaussian_grid(std: float, n: int = 200, half: float = 6.0) -> torch.Tensor:
    _, _, pts = grid_points((-half, half), n)
    return -0.5 * pts.square().sum(-1) / std**2  # unnormalised


def test_kl_on_grid_self_is_zero() -> None:
    _, _, logp = grid_log_density(EightGaussians(), 100)
    assert kl_on_grid(logp, logp) == pytest.approx(0.0, abs=1e-12)
    # normalisation constants do not matter
    assert kl_on_grid(logp, logp + 123.0) == pytest.approx(0.0, abs=1e-9)


def test_kl_on_grid_gaussians() -> None:
    true = _gaussian_grid(0.5)
    kls = [kl_on_grid(true, _gaussian_grid(s)) for s in (0.5, 0.6, 0.8, 1.0)]
    assert kls[0] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in itertools.pairwise(kls))
    # analytic KL(N(0, a^2 I) || N(0, b^2 I)) in 2-d: 2 log(b/a) + a^2/b^2 - 1
    a, b = 0.5, 1.0
    assert kls[-1] == pytest.approx(2 * math.log(b / a) + a**2 / b**2 - 1, rel=1e-3)


def test_kl_on_grid_zero_and_inf_handling() -> None:
    n = 10
    uniform = torch.zeros(n, n)
    half = uniform.clone()
    half[:, : n // 2] = -math.inf
    # true supported on half the cells, model uniform: KL = log 2; 0 * log 0 cells count 0
    assert kl_on_grid(half, uniform) == pytest.approx(math.log(2.0), rel=1e-12)
    # model is zero where the true density is positive
    assert kl_on_grid(uniform, half) == math.inf
    assert math.isnan(kl_on_grid(uniform, torch.full((n, n), math.nan)))
    with pytest.raises(ValueError, match="zero on every"):
        kl_on_grid(torch.full((n, n), -math.inf), uniform)
    with pytest.raises(ValueError, match="shape"):
        kl_on_grid(uniform, torch.zeros(n, n + 1))


# ----------------------------------------------------------------------------- DataModule


def _small_dm(**kwargs: object) -> Toy2dDataModule:
    defaults: dict[str, object] = {"n_train": 1000, "n_val": 250, "n_test": 130, "batch_size": 100}
    defaults.update(kwargs)
    dm = Toy2dDataModule(**defaults)
    dm.setup()
    return dm


def _train_batches(dm: Toy2dDataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(dm.train_dataloader())


def test_datamodule_shapes_and_setup_idempotent() -> None:
    dm = _small_dm(name="rings")
    assert dm.data_train[0].shape == (1000, 2) and dm.data_train[0].dtype == torch.float32
    assert dm.data_train[1].shape == (1000,) and dm.data_train[1].dtype == torch.long
    assert dm.data_val[0].shape == (250, 2) and dm.data_test[0].shape == (130, 2)
    train = dm.data_train
    dm.setup("fit")
    assert dm.data_train is train
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 2) and x.dtype == torch.float32
    assert y.shape == (100,) and y.dtype == torch.long
    assert isinstance(dm.distribution, Rings)
    assert dm.hparams.name == "rings" and dm.hparams.batch_size == 100
    # the splits are different draws
    assert not torch.equal(dm.data_train[0][:130], dm.data_test[0])


def test_train_examples_are_the_training_points_of_one_epoch() -> None:
    dm = Toy2dDataModule(name="moons", n_train=300, n_val=20, n_test=20, batch_size=64, seed=2)
    examples = dm.train_examples()  # draws the splits when nothing has yet
    assert dm.example_shape == (2,) and examples.shape == (300, 2)
    epoch = torch.cat([x for x, _ in dm.train_dataloader()])
    assert len(epoch) >= 256 and set(map(tuple, epoch.tolist())) <= set(
        map(tuple, examples.tolist())
    )
    assert torch.equal(examples, dm.data_train[0]) and not set(
        map(tuple, dm.data_val[0].tolist())
    ) & set(map(tuple, examples.tolist()))


def test_datamodule_deterministic_per_seed() -> None:
    a, b, c = _small_dm(seed=3), _small_dm(seed=3), _small_dm(seed=4)
    for split in ("data_train", "data_val", "data_test"):
        assert torch.equal(getattr(a, split)[0], getattr(b, split)[0])
        assert not torch.equal(getattr(a, split)[0], getattr(c, split)[0])
    for (xa, ya), (xb, yb) in zip(_train_batches(a), _train_batches(b), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # same data, different seed: the shuffled order differs too
    c.data_train = a.data_train
    assert not torch.equal(_train_batches(a)[0][0], _train_batches(c)[0][0])
    # epochs of one loader are reshuffled
    loader = a.train_dataloader()
    first, second = next(iter(loader))[0], next(iter(loader))[0]
    assert not torch.equal(first, second)


def test_datamodule_train_epoch_covers_each_sample_once() -> None:
    dm = _small_dm(name="moons")
    batches = _train_batches(dm)
    assert len(batches) == 10
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    tx, ty = dm.data_train
    assert not torch.equal(x, tx)  # shuffled
    order, t_order = x[:, 0].argsort(), tx[:, 0].argsort()
    assert torch.equal(x[order], tx[t_order]) and torch.equal(y[order], ty[t_order])
    # drop_last: 1050 samples give 10 full batches of 100, all distinct
    dm = _small_dm(name="moons", n_train=1050)
    batches = _train_batches(dm)
    assert [len(b[0]) for b in batches] == [100] * 10
    assert torch.unique(torch.cat([b[0] for b in batches]), dim=0).shape[0] == 1000


def test_datamodule_eval_loaders_are_sequential_and_complete() -> None:
    dm = _small_dm()
    for loader, (x, y) in (
        (dm.val_dataloader(), dm.data_val),
        (dm.test_dataloader(), dm.data_test),
    ):
        batches = list(loader)
        assert len(batches[-1][0]) == len(x) % 100 or len(batches[-1][0]) == 100
        assert torch.equal(torch.cat([b[0] for b in batches]), x)
        assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_datamodule_distribution_params_and_errors() -> None:
    dm = Toy2dDataModule(name="8gaussians", radius=3.0, std=0.05)
    assert dm.distribution == EightGaussians(radius=3.0, std=0.05)
    assert Toy2dDataModule(name="moons").distribution == Moons()
    assert Toy2dDataModule(name="moons", std=0.2).distribution == Moons(std=0.2)
    assert Toy2dDataModule(name="checkerboard", radius=5.0).distribution == Checkerboard()
    with pytest.raises(ValueError, match="no std"):
        Toy2dDataModule(name="checkerboard", std=0.1)
    with pytest.raises(ValueError, match="available: 8gaussians, checkerboard, moons, rings"):
        Toy2dDataModule(name="swissroll")
    with pytest.raises(ValueError, match="batch_size"):
        Toy2dDataModule(n_train=10, batch_size=20)


def test_datamodule_in_a_lightning_fit() -> None:
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))
            self.seen: list[tuple[tuple[int, ...], float]] = []

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            true_logp = self.trainer.datamodule.distribution.log_prob(x)
            self.seen.append((tuple(x.shape), float(true_logp.mean())))
            assert y.dtype == torch.long
            return (x - self.w).square().mean()

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = Toy2dDataModule(n_train=512, n_val=64, n_test=64, batch_size=64)
    model = Probe()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    assert [shape for shape, _ in model.seen] == [(64, 2)] * 3
    assert all(math.isfinite(v) for _, v in model.seen)


def test_a_checkerboard_of_small_squares_is_uniform_on_its_black_ones_closed_below() -> None:
    """5 x 5 squares of side 0.4 on [-1, 1]^2: 1 / (13 * 0.16) on the 13 black squares (column +
    row even), -inf on the white ones; a square holds its lower and left edges, the board not its
    upper or right one. Catches a density or a cell index that is right only for side 1."""
    board = Checkerboard(n_squares=5, half_width=1.0)
    side, black_density = 0.4, -math.log(13 * 0.4**2)
    centres = [(-1 + (i + 0.5) * side, -1 + (j + 0.5) * side) for j in range(5) for i in range(5)]
    expected = [
        black_density if (i + j) % 2 == 0 else -math.inf for j in range(5) for i in range(5)
    ]
    got = board.log_prob(torch.tensor(centres, dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    edges = torch.tensor(
        [[-1.0, -1.0], [1.0, -0.4], [-0.4, 1.0], [-0.19, -1.0]], dtype=torch.float64
    )
    black, white = black_density, -math.inf
    assert board.log_prob(edges).tolist() == [black, white, white, black]


@pytest.mark.parametrize("distribution", [Checkerboard(), Moons()], ids=["checkerboard", "moons"])
def test_a_nan_or_infinite_point_leaves_the_others_of_its_batch_alone(distribution) -> None:
    x = torch.tensor([[math.nan, 0.0], [0.0, 0.1], [math.inf, 0.0], [-0.5, -0.5]])
    alone = distribution.log_prob(x[[1, 3]])
    got = distribution.log_prob(x)
    assert math.isnan(got[0]) and got[2] == -math.inf
    torch.testing.assert_close(got[[1, 3]], alone)
    assert torch.isfinite(alone).any()
