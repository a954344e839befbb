"""The jobs a sweep planned, read back from its multirun.yaml, so that what did not run can be
named: by a sweep stopped with a signal, and by `scripts/summarize.py`.

Hydra's basic sweeper runs the product of the discrete sweeps (`a=1,2 b=x,y`: 4 jobs) in a fixed
order, numbering the job folders 0, 1, ...; that order is re-derived here with Hydra's own
splitting. Other sweepers (Optuna) choose each trial as they go: nothing to re-derive.
"""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf


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
