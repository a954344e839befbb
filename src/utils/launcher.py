"""What the SLURM launcher (`conf/hydra/launcher/slurm.yaml`) asks of a cluster, and how its
status checks are reported.

`gpus_per_node` is `${gpus_per_node:${trainer.accelerator},${trainer.devices}}`: the trainer's
devices when it trains on GPUs, none otherwise. A CPU-only cluster has no GPU "gres", and
`sbatch` refuses a job that asks for one, so `accelerator: auto` (the default trainer) asks for
none; `trainer=gpu` or `trainer=ddp` ask for their devices.

submitit reads job states with `sacct`; on a cluster without accounting every poll fails and
logs a warning, and sacct itself writes to stderr. `quiet_sacct` turns the first warning into one
line that says what it means, drops the repeats, and runs sacct with its stderr dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

GPU_ACCELERATORS = ("gpu", "cuda")


def gpus_per_node(accelerator: str | None, devices: int | str | None) -> int | None:
    """The GPUs a job asks for on each node: the devices of a GPU trainer, else None."""
    if str(accelerator).lower() not in GPU_ACCELERATORS:
        return None
    return int(devices) if devices not in (None, "auto", -1, "-1") else None


log = logging.getLogger(__name__)
SACCT_OFF = (
    "submitit cannot read job states from sacct (is SLURM accounting off?); it goes on with "
    "squeue's, and this is said once"
)


class _OneSacctWarning(logging.Filter):
    """Drops submitit's sacct warnings; the first becomes one line of this module's logger
    (submitit's own logger writes each record to stdout, stderr and the root's handlers)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if not self.seen:
            self.seen = True
            log.warning(SACCT_OFF)
        return False


def _without_stderr(make_command: Callable[[Any], list[str] | None]) -> Callable:
    """submitit's sacct command run through `sh`, its stderr dropped: on a cluster without
    accounting sacct writes "Slurm accounting storage is disabled" at every poll."""

    def command(watcher: Any) -> list[str] | None:
        argv = make_command(watcher)
        return None if argv is None else ["sh", "-c", 'exec "$@" 2>/dev/null', "sacct", *argv]

    command.quiet = True
    return command


def quiet_sacct() -> None:
    """One line, once per process, for submitit's failing sacct polls, and none of sacct's own
    stderr."""
    logger = logging.getLogger("submitit")
    if not any(isinstance(f, _OneSacctWarning) for f in logger.filters):
        logger.addFilter(_OneSacctWarning())
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher
    except ImportError:  # no SLURM launcher installed: nothing to quieten
        return
    if not getattr(SlurmInfoWatcher._make_command, "quiet", False):
        SlurmInfoWatcher._make_command = _without_stderr(SlurmInfoWatcher._make_command)
