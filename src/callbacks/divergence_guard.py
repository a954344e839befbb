"""Stop a run whose loss, energies or gradients blow up, before the bad step is taken.

Every training run has this guard (`src/train.py` adds one with no bounds when the config has
none): a non-finite training loss (checked before its backward pass) or gradient stops the run
with one line and a non-zero exit, instead of training on NaN and reporting null metrics.

Energy models and critics can also diverge without a NaN in a few steps (the energies run off,
Langevin samples saturate); their configs set bounds. Before every optimiser step this callback
checks the model's latest energies (`pl_module.last_energies`, a dict of tensors, when it has
one) and the gradient norm of its parameters: a non-finite value or one beyond the configured
bound raises `DivergenceError`. The step is not taken and nothing is saved after it, so the run's
checkpoints are the last good ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from src.utils.bounds import PositiveFloat
from src.utils.errors import UserError


class DivergenceError(UserError):
    """The run diverged; the message names the value, the step and the last good checkpoint."""


class DivergenceGuard(pl.Callback):
    def __init__(
        self, max_energy: PositiveFloat = math.inf, max_grad_norm: PositiveFloat = math.inf
    ) -> None:
        if not (max_energy > 0 and max_grad_norm > 0):
            raise UserError(
                f"divergence guard: bounds must be > 0, got {max_energy}, {max_grad_norm}."
            )
        self.max_energy, self.max_grad_norm = max_energy, max_grad_norm

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self._stop(trainer, f"the training loss is {loss.detach().float().sum().item()}")

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        for name, values in getattr(pl_module, "last_energies", {}).items():
            worst = values.detach().abs().max().item() if values.numel() else 0.0
            if not math.isfinite(worst) or worst > self.max_energy:
                self._stop(trainer, f"|{name}| reached {worst:.4g} (bound {self.max_energy:g})")
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads).item()
            if not math.isfinite(norm) or norm > self.max_grad_norm:
                self._stop(
                    trainer, f"the gradient norm reached {norm:.4g} (bound {self.max_grad_norm:g})"
                )

    def _stop(self, trainer: pl.Trainer, what: str) -> None:
        saved = [
            Path(path)
            for callback in trainer.checkpoint_callbacks
            if isinstance(callback, ModelCheckpoint)
            for path in (callback.last_model_path, callback.best_model_path)
            if path and Path(path).is_file()
        ]
        last = str(max(saved, key=lambda path: path.stat().st_mtime)) if saved else ""
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
        raise DivergenceError(
            f"training diverged at step {trainer.global_step}: {what}; stopped before the step, "
            f"{kept}. Lower the learning rate (model.optimizer.lr), or for energy models the "
            "Langevin step size, or raise the energy regulariser (loss.alpha)."
        )
