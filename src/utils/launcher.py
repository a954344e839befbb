"""What the SLURM launcher (`conf/hydra/launcher/slurm.yaml`) asks of a cluster, and how its
status checks are reported.

`gpus_per_node` is `${gpus_per_node:${trainer.accelerator},${trainer.devices}}`: the trainer's
devices when it trains on GPUs, none otherwise. A CPU-only cluster has no GPU "gres", and
`sbatch` refuses a job that asks for one, so `accelerator: auto` (the default trainer) asks for
none; `trainer=gpu` or `trainer=ddp` ask for their devices.

submitit reads job states with `sacct`; on a cluster without accounting every poll fails and
logs a warning. `quiet_sacct` keeps the first, as one line that says what it means, and drops the
repeats.
"""

from __future__ import annotations

import logging

GPU_ACCELERATORS = ("gpu", "cuda")


def gpus_per_node(accelerator: str | None, devices: int | str | None) -> int | None:
    """The GPUs a job asks for on each node: the devices of a GPU trainer, else None."""
    if str(accelerator).lower() not in GPU_ACCELERATORS:
        return None
    return int(devices) if devices not in (None, "auto", -1, "-1") else None


class _OneSacctWarning(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg = (
            "submitit cannot read job states from sacct (is SLURM accounting off?); it goes on "
            "with squeue's, and this is said once"
        )
        record.args = ()
        return True


def quiet_sacct() -> None:
    """Let one of submitit's repeated sacct warnings through (once per process)."""
    logger = logging.getLogger("submitit")
    if not any(isinstance(f, _OneSacctWarning) for f in logger.filters):
        logger.addFilter(_OneSacctWarning())
