"""Sample-quality metrics in the shipped classifier's feature space: FID of a set with itself,
growth with noise, agreement with a direct computation, the callback's and script's checks."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from src.data.image_datamodule import ImageDataModule
from src.metrics.sample_quality import SampleQuality, load_features
from src.train import train
from src.utils.compose import ROOT
from src.utils.errors import UserError
from tests.conftest import needs_fashion, run_script

CLASSIFIER = ROOT / "assets" / "fashion_mnist_classifier.ckpt"


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return ImageDataModule("fashion_mnist").reference_images("test")[:1000]


def replay(images: torch.Tensor, noise: float = 0.0):
    """A 'generator' that returns the given images (plus Gaussian noise), in order."""
    position = 0

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        nonlocal position
        chunk = images[position : position + n]
        position += n
        return chunk + noise * torch.randn(chunk.shape, generator=generator)

    return sample


@needs_fashion
def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(test_images) -> None:
    features, trained_on = load_features(CLASSIFIER)
    assert trained_on == "fashion_mnist"
    metric = SampleQuality(features, kid_subset_size=250, kid_subsets=10)
    metric.set_reference(test_images)
    assert abs(metric(replay(test_images), len(test_images))["fid"]) < 1e-6
    noisy = [metric(replay(test_images, s), len(test_images)) for s in (0.05, 0.1, 0.2, 0.4)]
    fids, kids = [m["fid"] for m in noisy], [m["kid"] for m in noisy]
    assert fids[0] > 1e-3
    assert all(a < b for a, b in itertools.pairwise(fids)), fids
    assert all(a < b for a, b in itertools.pairwise(kids)), kids


@needs_fashion
def test_fid_equals_the_closed_form_on_the_features(test_images) -> None:
    features, _ = load_features(CLASSIFIER)
    real, fake = test_images[:500], test_images[500:1000].flip(-1)
    metric = SampleQuality(features, kid_subset_size=200, kid_subsets=2)
    metric.set_reference(real)
    measured = metric(replay(fake), 500)["fid"]
    f_r, f_g = features(real).double().numpy(), features(fake).double().numpy()
    c_r, c_g = np.cov(f_r, rowvar=False), np.cov(f_g, rowvar=False)
    root = linalg.sqrtm(c_r @ c_g).real
    expected = ((f_r.mean(0) - f_g.mean(0)) ** 2).sum() + np.trace(c_r + c_g - 2 * root)
    assert measured == pytest.approx(expected, rel=1e-3)


def test_a_missing_classifier_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="experiment=classifier_fmnist"):
        load_features(tmp_path / "nope.ckpt")


@needs_fashion
def test_the_callback_refuses_models_that_cannot_sample(make_cfg) -> None:
    cfg = make_cfg(
        "model=classifier",
        "trainer.fast_dev_run=true",
        "+callbacks.sample_quality._target_=src.callbacks.sample_quality.SampleQualityCallback",
        f"+callbacks.sample_quality.classifier_ckpt={CLASSIFIER}",
    )
    with pytest.raises(UserError, match="has no sample"):
        train(cfg)


def test_the_callback_refuses_a_classifier_of_other_data(make_cfg, fake_mnist_dir: Path) -> None:
    cfg = make_cfg(
        "model=wgan_gp",
        "data=mnist",
        f"data.data_dir={fake_mnist_dir}",
        "data.val_size=100",
        "trainer.fast_dev_run=true",
        "+callbacks.sample_quality._target_=src.callbacks.sample_quality.SampleQualityCallback",
        f"+callbacks.sample_quality.classifier_ckpt={CLASSIFIER}",
    )
    with pytest.raises(UserError, match="trained on fashion_mnist, the data is mnist"):
        train(cfg)


@needs_fashion
def test_script_measures_a_vae_checkpoint(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "model=vae",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "model.iwae_samples=2",
    )
    train(cfg)
    ckpt = next(Path(cfg.paths.output_dir).glob("checkpoints/last.ckpt"))
    result = run_script("scripts/sample_quality.py", f"ckpt_path={ckpt}", "n=400")
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["n"] == 400 and values["fid"] > 0
    missing = run_script("scripts/sample_quality.py", f"ckpt_path={ckpt}", "classifier_ckpt=x.ckpt")
    assert missing.returncode == 2 and "not found" in missing.stderr
