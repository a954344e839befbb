"""`callbacks=ema`: Lightning's EMA weight averaging, checked against an EMA computed by hand."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning.pytorch as pl
import torch

from src.train import build
from src.utils.instantiate import instantiate_callbacks
from tests.conftest import compose_config, write_fake_mnist


class Snapshots(pl.Callback):
    """The raw weights after every optimiser step."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.weights.append({k: v.detach().clone() for k, v in module.named_parameters()})


def test_ema_callback_averages_the_weights(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "mnist", n_train=400, n_test=50)
    cfg = compose_config(
        [
            "model=vae_2d",
            "data=mnist",
            f"data.data_dir={data}",
            "data.val_size=50",
            "data.batch_size=50",
            "callbacks=ema",
            "callbacks.ema.decay=0.7",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=6",
            "trainer.limit_val_batches=1",
            "logger=csv",
        ],
        tmp_path / "run",
    )
    datamodule, model = build(cfg)
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert any(type(c).__name__ == "ModelCheckpoint" for c in callbacks)  # the defaults stay
    callbacks = [c for c in callbacks if type(c).__name__ == "EMAWeightAveraging"]
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
