"""The energy model: contrastive-divergence direction, divergence guard, grid KL, experiments."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.callbacks.divergence_guard import DivergenceError, DivergenceGuard
from src.callbacks.toy_density import ToyDensityCallback
from src.data.toy_distributions import EightGaussians
from src.losses.contrastive_divergence import ContrastiveDivergence
from src.metrics.toy2d import grid_log_density
from src.models.components.energy_nets import ConvEnergy, MLPEnergy
from src.models.ebm import EBM
from src.train import build, train
from tests.conftest import needs_fashion, quiet_trainer, run_script

TOY_FAST = [
    "trainer.fast_dev_run=true",
    "model.sample_steps=5",
    "callbacks.toy_density.grid_size=40",
]
IMAGE_FAST = [
    *TOY_FAST[:2],
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "model.sampler.steps=3",
    "model.n_image_samples=4",
]


def test_cd_loss_is_the_formula() -> None:
    e_real, e_fake = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5, 1.0])
    terms = ContrastiveDivergence(alpha=0.5)(e_real, e_fake)
    reg = 0.5 * ((1 + 4) / 2 + (9 + 0.25 + 1) / 3)
    assert terms["loss"].item() == pytest.approx((-0.5 - 1.5) + reg)
    assert terms["reg"].item() == pytest.approx(reg)


def test_a_cd_step_lowers_data_energy_and_raises_sample_energy() -> None:
    torch.manual_seed(0)
    energy = MLPEnergy((2,), hidden=(16,))
    x_real, x_fake = torch.randn(64, 2) * 0.1 + 1.0, torch.randn(64, 2) * 0.1 - 1.0
    before = energy(x_real).mean().item(), energy(x_fake).mean().item()
    loss = ContrastiveDivergence(alpha=0.0)(energy(x_real), energy(x_fake))["loss"]
    loss.backward()
    with torch.no_grad():
        for p in energy.parameters():
            p -= 0.05 * p.grad
    after = energy(x_real).mean().item(), energy(x_fake).mean().item()
    assert after[0] < before[0] and after[1] > before[1]


def test_energy_nets_give_one_energy_per_example() -> None:
    assert MLPEnergy((2,))(torch.randn(5, 2)).shape == (5,)
    conv = ConvEnergy((1, 28, 28), channels=(4, 8))
    x = torch.rand(3, 1, 28, 28)
    # no batch statistics: an example's energy does not depend on its batch
    assert torch.allclose(conv(x)[:1], conv(x[:1]), atol=1e-6)


def _last_linear(net: torch.nn.Module) -> torch.nn.Linear:
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]


class _TrueEnergy(torch.nn.Module):
    """E = -log p of the 8 Gaussians plus a constant: the grid KL must be (nearly) 0."""

    def __init__(self, dist: EightGaussians) -> None:
        super().__init__()
        self.dist = dist

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 - self.dist.log_prob(x)


def _grid_kl(model: EBM, distribution: EightGaussians, n: int) -> float:
    """The toy-density callback's KL(true || exp(-E)) on an n x n grid."""
    callback = ToyDensityCallback(grid_size=n)
    callback.distribution = distribution
    return callback.grid_measures(callback.on_grid(model.log_density, "cpu"), model)["kl"]


def test_grid_kl_is_zero_for_the_true_energy_and_right_for_a_flat_one(make_cfg) -> None:
    datamodule, model = build(make_cfg("model=ebm_2d", "data=toy2d"))
    dist = datamodule.distribution
    model.energy = _TrueEnergy(dist)
    assert _grid_kl(model, dist, 100) == pytest.approx(0.0, abs=1e-9)
    model.energy = MLPEnergy((2,), hidden=(4,))
    torch.nn.init.zeros_(_last_linear(model.energy).weight)
    _, _, log_p = grid_log_density(dist, 100)
    p = torch.softmax(log_p.flatten(), 0)
    expected = float((p * (p.clamp_min(1e-300).log() + math.log(p.numel()))).sum())
    assert _grid_kl(model, dist, 100) == pytest.approx(expected, rel=1e-6)


class _BlowUp(pl.Callback):
    """Multiplies the energy's last layer by 1e8 at the start of the second epoch."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                _last_linear(pl_module.energy).weight.mul_(1e8)


def test_divergence_guard_stops_before_the_bad_step_and_keeps_the_good_checkpoint(
    make_cfg, tmp_path: Path
) -> None:
    datamodule, model = build(make_cfg("model=ebm_2d", "data=toy2d", "model.sampler.steps=2"))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = quiet_trainer(
        max_epochs=3,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        inference_mode=False,
        callbacks=[checkpoint, DivergenceGuard(max_energy=1e4), _BlowUp()],
    )
    with pytest.raises(DivergenceError, match=r"last\.ckpt") as err:
        trainer.fit(model, datamodule=datamodule)
    assert "step 3" in str(err.value) and "|e_" in str(err.value)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    weights = torch.cat([w.flatten() for w in saved["state_dict"].values()])
    assert weights.abs().max() < 100  # the good weights, from before the blow-up


def test_divergence_guard_catches_non_finite_gradients() -> None:
    module = pl.LightningModule()
    module.layer = torch.nn.Linear(2, 1)
    module.layer.weight.grad = torch.tensor([[math.nan, 0.0]])
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(DivergenceError, match="gradient norm reached nan"):
        DivergenceGuard().on_before_optimizer_step(pl.Trainer(logger=False), module, optimizer)


def test_smoke_fast_dev_run_ebm_toy(make_cfg) -> None:
    metrics = train(make_cfg("experiment=ebm_toy", *TOY_FAST))
    for key in ("train/loss", "val/kl", "test/kl", "test/e_real", "test/e_fake"):
        assert math.isfinite(metrics[key]), key
    parts = sum(metrics[f"test/kl_{part}"] for part in ("mass", "shares", "within"))
    assert parts == pytest.approx(metrics["test/kl"], rel=1e-4)


@needs_fashion
def test_smoke_fast_dev_run_ebm_fmnist(make_cfg) -> None:
    quality = ["callbacks.sample_quality.n_test=50", "callbacks.sample_quality.kid_subset_size=25"]
    cfg = make_cfg("experiment=ebm_fmnist", *IMAGE_FAST, *quality, "model.sample_steps=2")
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/e_real"])
    assert metrics["test/fid"] > 0 and math.isfinite(metrics["test/kid"])


@needs_fashion
def test_long_chains_from_a_checkpoint(make_cfg, tmp_path: Path) -> None:
    overrides = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    cfg = make_cfg("model=ebm", *IMAGE_FAST[1:], *overrides, "trainer.limit_val_batches=1")
    with open_dict(cfg):
        cfg.test, cfg.model.buffer_size = False, 32
    train(cfg)
    out = tmp_path / "chains.png"
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = run_script("scripts/sample.py", f"ckpt_path={ckpt}", "n=4", "steps=7", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    assert Image.open(out).size == (2 * 30 + 2, 2 * 30 + 2)


@pytest.mark.slow
def test_training_lowers_the_grid_kl(make_cfg) -> None:
    """800 steps take the grid KL from the flat energy's 2.99 nats to about 0.4-1.3. Measured
    over seeds 12345 and 1-5 (2026-12-01): untrained 2.983-2.992 at every seed; trained 0.41,
    0.54, 1.34, 0.66, 0.89, 0.54, and at most 1.43 under a data-loader variant that drew the
    model's noise from one stream. The bound, half the untrained KL, clears the worst by 0.16."""
    cfg = make_cfg("experiment=ebm_toy", "logger=csv", "callbacks=none", "data.n_val=500")
    with open_dict(cfg):
        cfg.trainer.update(max_epochs=4, limit_train_batches=200, max_time=None)
    datamodule, model = build(cfg)
    untrained = _grid_kl(model, datamodule.distribution, 200)
    metrics = train(cfg)
    assert untrained > 2.9 and metrics["test/kl"] < 0.5 * untrained, (untrained, metrics["test/kl"])


@pytest.mark.parametrize(
    ("experiment", "images"),
    [("ebm_toy", {"val/density"}), ("meg_toy", {"val/density", "val/critic_contour"})],
)
def test_toy_density_figures_reach_tensorboard(
    make_cfg, tmp_path: Path, experiment: str, images: set[str]
) -> None:
    cfg = make_cfg(
        f"experiment={experiment}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.toy_density.grid_size=40",
        "data.n_val=256",
    )
    train(cfg)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    tags = set(events.Reload().Tags()["images"])
    assert images <= tags, tags
    assert events.Scalars("val/kl")[-1].value > 0
