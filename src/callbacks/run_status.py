"""The run's status file while it fits, and a clean stop on SIGTERM or SIGUSR1.

A scheduler stops a job with SIGTERM (SLURM also on pre-emption) or warns it with SIGUSR1
before its time limit (`sbatch --signal=USR1@90`). Either way the run should end resumable and
say so: after the training step in progress, `last.ckpt` is saved exactly as the periodic
checkpoints are (so `train.py resume=<run_dir>` continues bit for bit), `status.json` says
`interrupted` with the step and the signal, and the process exits non-zero (`src/utils/run.py`).

Lightning notices SIGTERM itself (`trainer.received_sigterm`) and raises its `SIGTERMException`
at the end of the step; SIGUSR1 is caught here and raised the same way. Any other exception
during fitting marks the run `diverged` (`DivergenceError`) or `failed`.

On SLURM the warning also asks for a requeue, and that is the scheduler's tools' job: submitit
(the SLURM launcher) warns with SIGUSR2 (`sbatch --signal=USR2@<signal_delay_s>`) and requeues in
its handler, Lightning's SLURM environment requeues on SIGUSR1. Whatever handler a warning signal
had before the fit is called after `last.ckpt` is saved: the job is requeued from the step it was
on, and goes on from that `last.ckpt` when SLURM starts it again (`src/utils/launcher.py`).
submitit's handler ends the process itself (`SystemExit`); the status still says `interrupted`.
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
# the warnings before a time limit: ours, and submitit's where it handles one (a SLURM job)
WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)


class RunStatus(pl.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.signal: int | None = None
        self.saved: dict[str, Any] = {}
        self._previous: dict[int, Any] = {}

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.signal, self.saved = None, {}
        for signum in WARNINGS:
            previous = signal.getsignal(signum)
            if signum != signal.SIGUSR1 and not callable(previous):
                continue  # SIGUSR2 only where a scheduler's tool handles it
            try:
                signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread: Lightning's own SIGTERM handling holds
                break
            self._previous[signum] = previous
        if trainer.is_global_zero:
            write_status(self.run_dir, "running", step=trainer.global_step)

    def teardown(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous = {}

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if trainer.received_sigterm and self.signal is None:
            self.signal = signal.SIGTERM
        if self.signal is None or self.saved:
            return
        trainer.save_checkpoint(self.last_path)
        self.saved = {"checkpoint": str(self.last_path), "checkpoint_step": trainer.global_step}
        if trainer.received_sigterm:
            return
        previous = self._previous.get(self.signal)
        if callable(previous):  # the scheduler's tool: requeue this job (submitit also exits)
            if trainer.is_global_zero:
                self._write_interrupted(trainer.global_step)
            previous(self.signal, None)
        raise SIGTERMException  # a warning: stop the way Lightning stops for SIGTERM

    def on_exception(
        self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        if isinstance(exception, SIGTERMException) or (
            isinstance(exception, SystemExit) and self.saved
        ):
            self._write_interrupted(step)
            return
        if isinstance(exception, DivergenceError):
            status = {"status": "diverged", "error": str(exception)}
        else:
            error = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
            error = user_message(exception) or f"{type(exception).__name__}: {error}"
            status = {"status": "failed", "error": error}
        with contextlib.suppress(OSError):  # a full disk: the exception is what the user sees
            write_status(self.run_dir, status.pop("status"), step=step, **status)

    def _write_interrupted(self, step: int) -> None:
        name = signal.Signals(self.signal or signal.SIGTERM).name
        with contextlib.suppress(OSError):
            write_status(self.run_dir, "interrupted", step=step, signal=name, **self.saved)
