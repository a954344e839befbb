"""The callback that makes a checkpoint saved mid-epoch resume exactly (with
`src.data.resumable.ResumableLoader`): it records the loader's position and seeds the model's
noise by it."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from src.data.resumable import ResumableLoader, reseed_global


class ResumableTraining(pl.Callback):
    """What a mid-epoch checkpoint needs beyond Lightning's own state: the number of batches of the
    epoch trained so far (for `ResumableLoader`) and the module's running sums of the epoch's
    training metrics (`BaseModule` logs their means once at the epoch's end; it hands them over
    with `epoch_sums()` and takes them back with `restore_epoch_sums`). Before each training step
    it seeds the global RNG, which the model's noise comes from, with the loader's
    `model_seed(batch, rank)`: the step's noise depends on its position alone, whatever ran
    before it (4 us a step)."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):  # runs before the checkpoint callbacks save
            loader.trained, loader.epoch_batches = i + 1, int(trainer.num_training_batches)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        loader = trainer.train_dataloader
        mid_epoch = isinstance(loader, ResumableLoader) and loader.trained < loader.epoch_batches
        if mid_epoch and hasattr(module, "epoch_sums"):
            checkpoint["train_epoch_sums"] = module.epoch_sums()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._sums = checkpoint.get("train_epoch_sums")

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            reseed_global(loader.model_seed(i, trainer.global_rank))
        if self._sums is not None:  # after the module's on_train_epoch_start reset them
            module.restore_epoch_sums(self._sums)
            self._sums = None
