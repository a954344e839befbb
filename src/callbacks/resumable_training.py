"""The callback that makes a checkpoint resume exactly, mid-epoch too (with
`src.data.resumable.ResumableLoader`, which owns the data's randomness)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from src.data.resumable import ResumableLoader


class ResumableTraining(pl.Callback):
    """What a checkpoint needs beyond Lightning's own state for an exact resume:

    - the number of batches of the epoch trained so far (for `ResumableLoader`) and the module's
      running sums of the epoch's training metrics (`BaseModule` logs their means once at the
      epoch's end; it hands them over with `epoch_sums()` and takes them back with
      `restore_epoch_sums`);
    - every process's global RNG state (torch's, and CUDA's on a GPU), put back just before the
      first training step of the resumed run, so the model's own noise (reparameterisation,
      dropout, chain starts) continues as in the run that was not interrupted. Validation in the
      middle of fitting runs on a copy of the RNG state: it never shifts the training's stream.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Any] | None = None
        self._rng: dict[str, torch.Tensor] | None = None
        self._before_validation: dict[str, torch.Tensor] | None = None

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
        states = self._before_validation or rng_states()  # saved in validation: the stream's
        checkpoint["rng_states"] = {k: _gathered(trainer, v) for k, v in states.items()}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._sums = checkpoint.get("train_epoch_sums")
        self._rng = checkpoint.get("rng_states")

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        if self._sums is not None:  # after the module's on_train_epoch_start reset them
            module.restore_epoch_sums(self._sums)
            self._sums = None
        if self._rng is not None:
            rank, world = trainer.global_rank, trainer.world_size
            states = {k: v[rank] for k, v in self._rng.items() if len(v) == world}
            set_rng_states(states)
            self._rng = None

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._before_validation = rng_states()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._before_validation is not None:
            set_rng_states(self._before_validation)
            self._before_validation = None


def rng_states() -> dict[str, torch.Tensor]:
    """This process's global RNG states: torch's and, once CUDA is in use, the current GPU's."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"].cpu())


def _gathered(trainer: pl.Trainer, state: torch.Tensor) -> torch.Tensor:
    """(world size, bytes): every process's state, row by global rank."""
    if trainer.world_size == 1:
        return state[None]
    return trainer.strategy.all_gather(state.to(trainer.strategy.root_device)).cpu()
