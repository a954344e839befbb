"""`callbacks=ema`: Lightning's EMA weight averaging, checked against an EMA computed by hand, and
in place for the models' own epoch-end measures."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from omegaconf import DictConfig

from src.train import build
from src.utils.instantiate import instantiate_callbacks
from tests.conftest import compose_config, quiet_trainer, write_fake_mnist


class Snapshots(pl.Callback):
    """The raw weights after every optimiser step."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.weights.append({k: v.detach().clone() for k, v in module.named_parameters()})


def _vae_on_fake_mnist(tmp_path: Path, n_train: int, *overrides: str) -> DictConfig:
    data = write_fake_mnist(tmp_path / "mnist", n_train=n_train, n_test=50)
    cfg = [f"data.data_dir={data}", "data.val_size=50", "data.batch_size=50", *overrides]
    return compose_config(["model=vae_2d", "data=mnist", *cfg], tmp_path / "run")


def test_ema_callback_averages_the_weights(tmp_path: Path) -> None:
    cfg = _vae_on_fake_mnist(
        tmp_path,
        400,
        "callbacks=ema",
        "callbacks.ema.decay=0.7",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.limit_val_batches=1",
        "logger=csv",
    )
    datamodule, model = build(cfg)
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert any(type(c).__name__ == "ModelCheckpoint" for c in callbacks)  # the defaults stay
    callbacks = [c for c in callbacks if isinstance(c, EMAWeightAveraging)]
    assert len(callbacks) == 1
    snapshots = Snapshots()
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[snapshots, *callbacks], logger=False)
    trainer.fit(model, datamodule=datamodule)
    assert len(snapshots.weights) == 6
    expected = dict(snapshots.weights[0])  # the average starts as a copy of the first weights
    for weights in snapshots.weights[1:]:
        expected = {k: 0.7 * expected[k] + 0.3 * w for k, w in weights.items()}
    final = dict(model.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(final[name].detach(), value, rtol=1e-5, atol=1e-6)
    last = snapshots.weights[-1]
    assert any(not torch.allclose(final[k], last[k]) for k in last)  # not just the raw weights


def _weights_seen_in_validation(tmp_path: Path, callback: type | None) -> list[list[torch.Tensor]]:
    """The weights at each validation batch and in the module's on_validation_epoch_end."""
    datamodule, model = build(_vae_on_fake_mnist(tmp_path, 200))
    seen: list[list[torch.Tensor]] = []

    class Recording(type(model)):
        def snapshot(self) -> None:
            seen.append([p.detach().clone() for p in self.parameters()])

        def validation_step(self, *args, **kwargs):
            self.snapshot()
            return super().validation_step(*args, **kwargs)

        def on_validation_epoch_end(self) -> None:
            self.snapshot()
            super().on_validation_epoch_end()

    model.__class__ = Recording
    ema = [callback(decay=0.5)] if callback else []
    trainer = quiet_trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=ema,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return seen


@pytest.mark.parametrize("stock", [False, True])
def test_the_average_is_in_place_for_the_module_epoch_end(tmp_path: Path, stock: bool) -> None:
    """Lightning's own callback swaps the live weights back before the module's epoch-end hook;
    EMAForValidation keeps the average there, as in the validation steps."""
    from src.callbacks.weight_averaging import EMAForValidation

    seen = _weights_seen_in_validation(tmp_path, EMAWeightAveraging if stock else EMAForValidation)
    assert len(seen) == 4  # per epoch: one validation batch, then the epoch end
    for batch, epoch_end in (seen[0:2], seen[2:4]):
        same = all(torch.equal(a, b) for a, b in zip(batch, epoch_end, strict=True))
        assert same != stock
