"""Training end to end on the embedded data: every model, seeds, checkpoints, evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import open_dict

import src.train
from src.train import train
from src.utils.instantiate import instantiate
from tests.conftest import ROOT, compose_config, needs_fashion, run_eval, run_script

FAST = ["trainer.fast_dev_run=true", "data.eval_batch_size=64", "model.iwae_samples=4"]
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.eval_batch_size=200",
    "model.iwae_samples=8",
    "trainer.log_every_n_steps=2",
    "trainer.num_sanity_val_steps=0",
]
pytestmark = needs_fashion


@pytest.mark.parametrize("model", ["vae", "vae_2d", "vae_conv", "vae_gumbel"])
def test_smoke_fast_dev_run_every_model(make_cfg, model: str) -> None:
    metrics = train(make_cfg(f"model={model}", *FAST))
    for key in ("train/nelbo", "val/nelbo", "test/nelbo", "test/iwae_nll", "test/kl"):
        assert math.isfinite(metrics[key]), key
    # one decoder pass of 784 Bernoulli pixels: an untrained model pays about 784 * log 2 nats
    assert 300 < metrics["test/nelbo"] < 1000


@pytest.mark.parametrize("loss", ["gaussian", "continuous_bernoulli"])
def test_smoke_fast_dev_run_grey_level_likelihoods(make_cfg, loss: str) -> None:
    metrics = train(make_cfg(f"loss={loss}", "data.binarize=false", "loss.kl=monte_carlo", *FAST))
    assert math.isfinite(metrics["test/nelbo"])


def test_smoke_fast_dev_run_mnist_from_data_dir(make_cfg, fake_mnist_dir: Path) -> None:
    cfg = make_cfg("data=mnist", f"data.data_dir={fake_mnist_dir}", "data.val_size=100", *FAST)
    assert math.isfinite(train(cfg)["val/nelbo"])


def test_same_seed_same_loss_other_seed_other_loss(tmp_path: Path) -> None:
    runs = [
        train(compose_config([f"seed={seed}", "logger=csv", *SHORT], tmp_path / f"run{i}"))
        for i, seed in enumerate((1, 1, 2))
    ]
    assert runs[0]["train/nelbo"] == runs[1]["train/nelbo"]
    assert runs[0]["val/nelbo"] == runs[1]["val/nelbo"]
    assert runs[0]["train/nelbo"] != runs[2]["train/nelbo"]


def test_training_lowers_the_negative_elbo(tmp_path: Path) -> None:
    quiet = ["logger=csv", "callbacks=none", *SHORT]
    before = train(compose_config(["train=false", *quiet], tmp_path / "untrained"))["test/nelbo"]
    cfg = compose_config(quiet, tmp_path / "trained")
    with open_dict(cfg):
        cfg.trainer.limit_train_batches = 60
    after = train(cfg)["test/nelbo"]
    assert after < before - 150, (before, after)


def test_checkpoint_then_eval_reproduces_the_validation_metric(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "model=vae_gumbel",
        "trainer.limit_val_batches=1.0",
        "test=false",
        *[o for o in SHORT if "limit_val" not in o],
    )
    metrics = train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (tmp_path / "checkpoints" / "epoch_000.ckpt").is_file()
    # eval.py finds the config next to the checkpoint, as in a real run directory
    (tmp_path / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    evaluated = run_eval(ckpt, tmp_path / "eval_logs")
    assert evaluated["val/nelbo"] == pytest.approx(metrics["val/nelbo"], abs=1e-4)
    assert evaluated["val/kl"] == pytest.approx(metrics["val/kl"], abs=1e-4)


def test_sample_script_writes_a_png_grid(make_cfg, tmp_path: Path) -> None:
    train(make_cfg("test=false", *SHORT))
    out = tmp_path / "grid.png"
    result = run_script(
        "scripts/sample.py", f"ckpt_path={tmp_path}/checkpoints/last.ckpt", "n=16", f"out={out}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    image = Image.open(out)
    assert image.size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 grid of 28 px with 2 px padding


def test_root_is_the_repository() -> None:
    assert (ROOT / "train.py").is_file() and (ROOT / "conf/train.yaml").is_file()


def test_basic_multirun_gives_one_directory_per_job(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        "-m",
        "debug=fdr",
        "model.latent.dim=2,3",
        "model.iwae_samples=2",
        "data.eval_batch_size=64",
        f"paths.log_dir={tmp_path}",
        "extras.print_config=false",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep,) = (tmp_path / "debug" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, dim in (("0", 2), ("1", 3)):
        assert f"model.latent.dim={dim}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert math.isfinite(json.loads((sweep / job / "metrics.json").read_text())["test/nelbo"])
        # each job ends by saying where it is and how to look at it
        assert f"run directory: {sweep / job}\n" in result.stdout
        assert f"open it in TensorBoard: tensorboard --logdir {sweep / job}\n" in result.stdout


class SeenLabels(pl.Callback):
    """The labels of every training batch, one list per epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[torch.Tensor]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.epochs.append([])

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.epochs[-1].append(batch[1].clone())


def test_overfit_preset_trains_on_the_same_few_batches(make_cfg, monkeypatch) -> None:
    """Lightning swaps in a sequential sampler for overfit_batches: the loaders must allow it, and
    every epoch trains on the same first batches of the training split. Catches: a loader that
    keeps shuffling (or seeds its order by epoch) under overfit_batches, or yields other batches."""
    cfg = make_cfg(
        "debug=overfit",
        "trainer.max_epochs=3",
        "trainer.overfit_batches=2",
        "trainer.limit_test_batches=1",
        "data.eval_batch_size=64",
        "model.iwae_samples=2",
    )
    seen = SeenLabels()
    configured = src.train.instantiate_callbacks
    monkeypatch.setattr(src.train, "instantiate_callbacks", lambda node: [*configured(node), seen])
    metrics = train(cfg)
    assert "test/nelbo" in metrics
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    first = datamodule.splits["train"].tensors[1][: 2 * cfg.data.batch_size]
    assert len(seen.epochs) == 3
    for labels in seen.epochs:
        assert len(labels) == 2 and torch.equal(torch.cat(labels), first)


def test_test_ckpt_picks_the_best_checkpoint_or_the_last_weights(tmp_path: Path) -> None:
    """With monitor_mode=max on the -ELBO, 'best' is the untrained-most epoch (epoch 0): testing it
    must give a higher test -ELBO than testing the weights after the last epoch."""
    quiet = ["logger=csv", "callbacks=default", "monitor_mode=max", *SHORT, "trainer.max_epochs=3"]
    tested = {
        which: train(compose_config([*quiet, f"test_ckpt={which}"], tmp_path / which))
        for which in ("best", "last")
    }
    assert tested["last"]["test/nelbo"] < tested["best"]["test/nelbo"] - 20, tested
    assert tested["last"]["val/nelbo"] == pytest.approx(tested["best"]["val/nelbo"])


def test_a_wrong_test_ckpt_is_one_line(make_cfg) -> None:
    from src.utils.errors import UserError

    with pytest.raises(UserError, match=r"test_ckpt='bets'.*'best'.*'last'"):
        train(make_cfg("test_ckpt=bets", *FAST))
