"""Lightning's EMA weight averaging, with the average in place for the whole validation.

`lightning.pytorch.callbacks.EMAWeightAveraging` swaps the averaged weights in at the start of a
validation epoch and back out in its `on_validation_epoch_end`. Lightning calls the callbacks'
epoch-end hooks before the module's, so every measure a model computes in its own
`on_validation_epoch_end` (samples drawn for the 2-d metrics, the energy's grid KL, sample grids)
would see the live weights while the per-batch metrics saw the average. This subclass swaps back
in `on_validation_end` instead, after the module's hooks and before the checkpoint callbacks
(which Lightning runs last) save.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMAForValidation(EMAWeightAveraging):
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The average stays in place for the module's own epoch-end hook."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
