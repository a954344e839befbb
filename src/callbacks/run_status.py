"""The run's status file while it fits, and a clean stop on SIGTERM or SIGUSR1.

A scheduler stops a job with SIGTERM (SLURM also on pre-emption) or warns it with SIGUSR1
before its time limit (`sbatch --signal=USR1@90`). Either way the run should end resumable and
say so: after the training step in progress, `last.ckpt` is saved exactly as the periodic
checkpoints are (so `train.py resume=<run_dir>` continues bit for bit), `status.json` says
`interrupted` with the step and the signal, and the process exits non-zero (`src/utils/run.py`).

Lightning notices SIGTERM itself (`trainer.received_sigterm`) and raises its `SIGTERMException`
at the end of the step; SIGUSR1 is caught here and raised the same way. Any other exception
during fitting marks the run `diverged` (`DivergenceError`) or `failed`.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.callbacks.divergence_guard import DivergenceError
from src.utils.errors import user_message
from src.utils.status import write_status

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class RunStatus(pl.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.signal: int | None = None
        self.saved: dict[str, Any] = {}
        self._previous: Any = None

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.signal, self.saved = None, {}
        try:
            self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
        except ValueError:  # not the main thread: Lightning's own SIGTERM handling still holds
            self._previous = None
        if trainer.is_global_zero:
            write_status(self.run_dir, "running", step=trainer.global_step)

    def teardown(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if trainer.received_sigterm and self.signal is None:
            self.signal = signal.SIGTERM
        if self.signal is None or self.saved:
            return
        trainer.save_checkpoint(self.last_path)
        self.saved = {"checkpoint": str(self.last_path), "checkpoint_step": trainer.global_step}
        if not trainer.received_sigterm:  # SIGUSR1: stop the way Lightning stops for SIGTERM
            raise SIGTERMException

    def on_exception(
        self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        if isinstance(exception, SIGTERMException):
            name = signal.Signals(self.signal or signal.SIGTERM).name
            status = {"status": "interrupted", "signal": name, **self.saved}
        elif isinstance(exception, DivergenceError):
            status = {"status": "diverged", "error": str(exception)}
        else:
            error = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
            error = user_message(exception) or f"{type(exception).__name__}: {error}"
            status = {"status": "failed", "error": error}
        with contextlib.suppress(OSError):  # a full disk: the exception is what the user sees
            write_status(self.run_dir, status.pop("status"), step=step, **status)
