"""Optuna's pruning in an `hparams_search` sweep: stop a trial whose monitored value falls behind.

After each training epoch that validated, the job reports the monitored metric to its trial
(`trial.report(value, step=epoch)`) and asks the pruner (`trial.should_prune()`, a MedianPruner
in the presets: prune when the value is worse than the median of earlier trials at that epoch).
A pruned trial stops after this epoch, the way early stopping stops it, is tested as any run is,
and returns its monitored value; the study records it as pruned (`src/utils/optuna_trials.py`).

This is the job of optuna-integration's PyTorchLightningPruningCallback, which cannot serve here:
the Hydra sweeper needs Optuna 2, whose callback is written for the `pytorch_lightning` namespace,
and optuna-integration needs Optuna 3.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from src.utils.errors import UserError
from src.utils.optuna_trials import PRUNED, this_jobs_trial

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str, pruner: Any = None) -> None:
        self.monitor, self.pruner = monitor, pruner
        self.trial: Any = None
        self.validated = False

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.trial = this_jobs_trial(self.pruner)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.validated = self.validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.validated:
            return
        self.validated = False
        prune, epoch = False, trainer.current_epoch
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise UserError(
                    f"optuna_pruning: the model logs no {self.monitor} to report; set "
                    "callbacks.optuna_pruning.monitor to a metric it logs in validation."
                )
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_system_attr(PRUNED, epoch)
                log.warning(
                    f"Optuna pruned trial {self.trial.number} after epoch {epoch}: "
                    f"{self.monitor}={float(value):.6g}"
                )
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
