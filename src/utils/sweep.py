"""The jobs a sweep planned, read back from its multirun.yaml, so that what did not run can be
named (by a sweep stopped with a signal, and by `scripts/summarize.py`) and run again
(`resume_sweep=<multirun dir>`: the jobs that finished are kept, the others run).

Hydra's basic sweeper runs the product of the discrete sweeps (`a=1,2 b=x,y`: 4 jobs) in a fixed
order, numbering the job folders 0, 1, ...; that order is re-derived here with Hydra's own
splitting. Other sweepers (Optuna) choose each trial as they go: nothing to re-derive.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from src.utils.errors import UserError
from src.utils.resume import MULTIRUN, override_key
from src.utils.status import read_status

RESUME = "resume_sweep"


def planned_jobs(sweep_dir: str | Path) -> list[list[str]] | None:
    """The overrides of each job of a basic sweep, in job order; None when they cannot be known
    (no multirun.yaml, or another sweeper)."""
    path = Path(sweep_dir, "multirun.yaml")
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if not str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith(
        "BasicSweeper"
    ):
        return None
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += [str(o) for o in OmegaConf.select(cfg, "hydra.overrides.task", default=[])]
    parsed = OverridesParser.create().parse_overrides(arguments)
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch


def not_run_message(sweep_dir: str | Path, stopped_job: int) -> str:
    """One line naming the jobs of the sweep after `stopped_job` that will not run."""
    jobs = planned_jobs(sweep_dir)
    if jobs is None:
        return f"the sweep in {sweep_dir} stopped at job {stopped_job}; later jobs did not run."
    rest = list(range(stopped_job + 1, len(jobs)))
    if not rest:
        return f"the sweep in {sweep_dir} stopped at its last job ({stopped_job})."
    listed = "; ".join(f"{i}: {' '.join(jobs[i])}" for i in rest)
    return (
        f"the sweep in {sweep_dir} stopped at job {stopped_job}; these jobs did not run: {listed}"
    )


def check_sweep_to_resume(argv: list[str]) -> None:
    """`resume_sweep=<dir>` names a basic or joblib sweep run with this command's overrides."""
    values = [a.split("=", 1)[1] for a in argv[1:] if "=" in a and override_key(a) == RESUME]
    if not values or values[-1] in ("", "null"):
        return
    folder = Path(values[-1])
    if not any(a in MULTIRUN for a in argv[1:]):
        raise UserError(
            f"{RESUME}={folder} continues a sweep: give it with the sweep's -m command."
        )
    saved = folder / "multirun.yaml"
    if not saved.is_file():
        raise UserError(
            f"{RESUME}={folder} is not a sweep directory (no multirun.yaml): give a "
            "logs/<task_name>/multiruns/<stamp> folder."
        )
    if planned_jobs(folder) is None:
        raise UserError(
            f"{RESUME}={folder} is not a basic or joblib sweep: an Optuna search continues its "
            f"study when the same command runs again, without {RESUME}."
        )
    task = OmegaConf.select(OmegaConf.load(saved), "hydra.overrides.task", default=[])
    before = sorted(str(o) for o in task if override_key(str(o)) != RESUME)
    now = sorted(a for a in argv[1:] if a not in MULTIRUN and override_key(a) != RESUME)
    if before != now:
        raise UserError(
            f"{RESUME}={folder} ran the overrides `{' '.join(before)}`, not `{' '.join(now)}`: "
            "give the same ones, so that each job continues its own run."
        )


def finished_job(job_dir: str | Path) -> dict[str, Any] | None:
    """The metrics of a job that finished (status and metrics.json), else None."""
    metrics = Path(job_dir, "metrics.json")
    if read_status(job_dir).get("status") != "finished" or not metrics.is_file():
        return None
    return json.loads(metrics.read_text())
