"""Resuming a run in its own directory: `train.py resume=<run_dir>` or `ckpt_path=<a checkpoint
in a run>`. Which directory it continues in, the run's own overrides put first on the command
line, and the checks made before Hydra writes anything into that directory, so that a refused
resume leaves the run byte for byte as it was:

- `resume=` must be a run directory, and a `ckpt_path=` given with it one of that run's own
  checkpoints (another run's would train its weights in this run's folder);
- the checkpoint must be readable and safe (`read_checkpoint`);
- a run whose status is `finished` has nothing to resume: unless new settings are given (a larger
  budget), it is left alone;
- the saved overrides may only build the project's classes, like any config from elsewhere (a
  `_target_` of your own: give that override again on the command line).

A checkpoint outside any run directory starts a new run from its weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from src.utils.checkpoint import read_checkpoint
from src.utils.errors import UserError, shown
from src.utils.launcher import gpus_per_node
from src.utils.status import read_status
from src.utils.trust import trusted_target

MULTIRUN = ("-m", "--multirun")


class NothingToResume(Exception):
    """The run has finished and nothing new was asked for; the entry point says so, exit 0."""


def run_dir_of(path: str | Path | None) -> Path | None:
    """The run directory that holds `path` (a run directory itself, or a checkpoint in it): the
    nearest of it and its parents with a `.hydra/config.yaml`; None for a path outside of runs."""
    if not path:
        return None
    path = Path(path).resolve()
    for candidate in (path, *list(path.parents)[:3]):
        if (candidate / ".hydra" / "config.yaml").is_file():
            return candidate
    return None


def resumed_run(resume: str | None, ckpt_path: str | None) -> Path | None:
    """The run directory a run continues in: `resume`, else the run holding `ckpt_path`."""
    return run_dir_of(resume) or (run_dir_of(ckpt_path) if ckpt_path else None)


def check_budget(checkpoint: dict, max_epochs: int | None) -> None:
    """Refuse a resume whose `trainer.max_epochs` is fewer than the epochs its checkpoint has
    completed (Lightning would stop with a traceback)."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    done = int(progress.get("current", {}).get("completed", checkpoint.get("epoch", 0)))
    if max_epochs is not None and 0 <= max_epochs < done:
        raise UserError(
            f"trainer.max_epochs={max_epochs} is fewer than the {done} epochs this run has "
            f"completed: give trainer.max_epochs={done + 1} or more to train further."
        )


def requeued_checkpoint(run_dir: str | None) -> str | None:
    """The checkpoint a requeued SLURM job goes on from. A job that SLURM requeues (preempted,
    `scontrol requeue`, or submitit's requeue before the time limit) runs again with the same
    config, so in the same run directory, and SLURM numbers the restart (`SLURM_RESTART_COUNT`
    >= 1): the run's `checkpoints/last.ckpt`, when there is one, is where it stopped."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if not run_dir or not restarts.isdigit() or int(restarts) < 1:
        return None
    return last_checkpoint(run_dir)


def last_checkpoint(run_dir: str | Path) -> str | None:
    """The run's `checkpoints/last.ckpt`, where an interrupted run stopped; None without one."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def _run_dir(resume: str | None, ckpt_path: str | None, fresh: str) -> str:
    run = resumed_run(resume, ckpt_path)
    return str(run) if run else fresh


def _config_subdir(
    resume: str | None, ckpt_path: str | None, stamp: str, resume_sweep: str | None = None
) -> str:
    """Where Hydra writes this run's config: .hydra/, or beside the first one of the run it
    continues (a resumed run, or a job of a resumed sweep that had started)."""
    resumed = resumed_run(resume, ckpt_path)
    if resume_sweep and not resumed:
        from hydra.core.hydra_config import HydraConfig

        job = (
            OmegaConf.select(HydraConfig.get(), "runtime.output_dir")
            if HydraConfig.initialized()
            else None
        )
        resumed = bool(job) and Path(job, ".hydra", "config.yaml").is_file()
    return f".hydra/resumed_{stamp}" if resumed else ".hydra"


def _sweep_dir(resume_sweep: str | None, fresh: str) -> str:
    return str(Path(resume_sweep).resolve()) if resume_sweep else fresh


def register_resolvers() -> None:
    """The resolvers the configs use: conf/train.yaml's `run_dir`, `config_subdir` and
    `sweep_dir`, the SLURM
    launcher's `gpus_per_node` (the entry points and `compose_run_config` call this before
    composing)."""
    OmegaConf.register_new_resolver("run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("config_subdir", _config_subdir, replace=True)
    OmegaConf.register_new_resolver("sweep_dir", _sweep_dir, replace=True)
    OmegaConf.register_new_resolver("gpus_per_node", gpus_per_node, replace=True)


def override_key(override: str) -> str:
    """The key of a command-line override: `+a.b=1` -> `a.b`."""
    return override.lstrip("+~").split("=", 1)[0]


def _check_saved_override(run: Path, override: str) -> None:
    key, _, value = override.partition("=")
    key = override_key(key)
    if key.split(".")[-1] == "_target_" and not trusted_target(value):
        raise UserError(
            f"{run}/.hydra/overrides.yaml sets {key}={shown(value)}, which is not one of "
            "the project's classes: a saved run's overrides are not trusted to build anything "
            "else. If you made this run, give that override again on the command line."
        )


def resume_argv(argv: list[str]) -> list[str]:
    """The command line of `train.py resume=<run_dir>` (or `ckpt_path=<a checkpoint in a run>`)
    after the checks above: the overrides saved in the run's .hydra/overrides.yaml, then those
    given now (which win). Any other command line comes back as it is."""
    given = {override_key(a): a.split("=", 1)[1] for a in argv[1:] if "=" in a}
    resume, ckpt_path = given.get("resume") or None, given.get("ckpt_path") or None
    if not resume and not ckpt_path:
        return argv
    if any(a in MULTIRUN for a in argv[1:]):
        raise UserError("resume or ckpt_path in a multirun: resume one run at a time, without -m.")
    run = resumed_run(resume, None) if resume else run_dir_of(ckpt_path)
    if resume and run is None:
        raise UserError(
            f"resume={resume} is not a run directory (no .hydra/config.yaml in it): give the "
            "directory of a train.py run, e.g. logs/train/runs/<run>."
        )
    if resume and ckpt_path and run_dir_of(ckpt_path) != run:
        owner = run_dir_of(ckpt_path)
        raise UserError(
            f"ckpt_path={ckpt_path} belongs to {owner or 'no run'}, not to resume={resume}: "
            "a run resumes from its own checkpoints. Drop resume= to start a new run from it."
        )
    if resume and not ckpt_path:
        ckpt_path = str(run / "checkpoints" / "last.ckpt")
        if not Path(ckpt_path).is_file():
            raise UserError(
                f"resume={resume} has no checkpoints/last.ckpt: pass "
                "ckpt_path=<one of its checkpoints> instead."
            )
    ckpt = read_checkpoint(ckpt_path)
    if run is None:
        return argv
    new_settings = [a for a in argv[1:] if override_key(a) not in ("resume", "ckpt_path")]
    status = read_status(run)
    if status.get("status") == "finished" and not new_settings:
        raise NothingToResume(
            f"{run} finished at step {status.get('step', ckpt.get('global_step'))}: nothing to "
            f"resume. To train it further give the new budget, e.g. python train.py "
            f"resume={run} trainer.max_epochs=<more>."
        )
    saved = [str(o) for o in OmegaConf.load(run / ".hydra" / "overrides.yaml")]
    kept = [o for o in saved if override_key(o) not in given]
    for override in kept:
        _check_saved_override(run, override)
    return [argv[0], *kept, *argv[1:]]
