"""The experiment trackers across a run's life: the packages a logger needs, one tracker run per run
directory (a resumed or requeued run writes into the run it started), and hyperparameters that a
resume does not try to change.

TensorBoard continues in the run directory itself (the events written after the checkpoint's step
are hidden with `purge_step`), and so does `metrics.csv` (`ResumableCSVLogger` keeps its rows up
to the checkpoint's step, which Lightning's writer would delete). MLflow and W&B keep their run
ids in `<run dir>/mlflow_run_id` and `<run dir>/wandb_run_id`: a run directory that has one
continues that tracker run, whatever made it go on (`resume=`, a SLURM requeue). Offline, each
part of a resumed W&B run is its own folder under `<run dir>/wandb/`, all with the run's id."""

from __future__ import annotations

import csv
import importlib.util
import logging
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from src.utils.errors import UserError
from src.utils.files import write_atomically

log = logging.getLogger(__name__)

MLFLOW_RUN_ID = "mlflow_run_id"
WANDB_RUN_ID = "wandb_run_id"
# a logger's class name: (the module it imports, the extra of pyproject.toml that installs it)
NEEDS = {
    "MLFlowLogger": ("mlflow", "mlflow"),
    "WandbLogger": ("wandb", "wandb"),
    "QuietWandbLogger": ("wandb", "wandb"),
}


def logger_nodes(cfg: DictConfig, class_name: str) -> list[DictConfig]:
    """The configured loggers of class `class_name` (by its `_target_`; a logger set to null is
    none)."""
    nodes = (cfg.get("logger") or {}).values()
    return [
        n
        for n in nodes
        if isinstance(n, DictConfig) and str(n.get("_target_", "")).rsplit(".", 1)[-1] == class_name
    ]


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, which starts by deleting the `metrics.csv` it finds; given
    `keep_until_step` (a resumed run's checkpoint step), the rows up to that step are written back
    first, so the file holds the whole run: the interrupted part, then the resumed one."""

    def __init__(
        self,
        save_dir: str,
        name: str = "csv",
        version: str = "",
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        keep_until_step: int | None = None,
    ) -> None:
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        self.keep_until_step = keep_until_step

    @property
    def experiment(self) -> Any:
        if self._experiment is not None or self.keep_until_step is None:
            return super().experiment
        kept = _rows_until(Path(self.log_dir, "metrics.csv"), self.keep_until_step)
        with warnings.catch_warnings():  # "previous log files ... will be deleted": not these
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment
        if kept and hasattr(writer, "save"):
            writer.metrics_keys = sorted(set().union(*kept))
            writer.metrics = kept
            writer.save()
        return writer


class QuietWandbLogger(WandbLogger):
    """Lightning's WandbLogger without the `anonymous` setting it always passes, which W&B (0.31
    here) answers with a warning on every run: the setting no longer does anything. `id` is the
    W&B run id, and `resume="allow"` continues that run."""

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = ".",
        version: str | None = None,
        offline: bool = False,
        project: str | None = None,
        log_model: bool | str = False,
        id: str | None = None,
        resume: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            save_dir=save_dir,
            version=version,
            offline=offline,
            project=project,
            log_model=log_model,
            id=id,
            resume=resume,
        )
        self._wandb_init.pop("anonymous", None)


def _rows_until(path: Path, step: int) -> list[dict[str, str]]:
    """The rows of a metrics.csv logged at `step` or before (none without the file)."""
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]


def require_logger_packages(cfg: DictConfig) -> None:
    """Refuse, in one line that names the extra, a logger whose package is not installed."""
    for class_name, (module, extra) in NEEDS.items():
        if logger_nodes(cfg, class_name) and importlib.util.find_spec(module) is None:
            raise UserError(
                f"the {class_name} logger needs the {module} package, which is not installed: "
                f"pip install -e '.[{extra}]' (with --constraint requirements.lock for the "
                "locked version), or drop the logger."
            )


def continue_trackers(cfg: DictConfig, out: str | None, resumed_step: int | None) -> None:
    """Point the configured loggers at this run directory's earlier tracker runs.

    TensorBoard: when resuming from step `resumed_step`, the events after it are hidden. MLflow:
    the run is named after the run directory, and continues the MLflow run recorded there."""
    if resumed_step is not None:
        for node in logger_nodes(cfg, "TensorBoardLogger"):
            with open_dict(node):
                node.purge_step = resumed_step
        for node in logger_nodes(cfg, "ResumableCSVLogger"):
            with open_dict(node):
                node.keep_until_step = resumed_step
    if not out:
        return
    recorded = Path(out, MLFLOW_RUN_ID)
    for node in logger_nodes(cfg, "MLFlowLogger"):
        with open_dict(node):
            node.run_name = node.get("run_name") or Path(out).name
            if recorded.is_file() and not node.get("run_id"):
                node.run_id = recorded.read_text().strip()
                log.info(f"MLflow: continuing run {node.run_id}")
    recorded = Path(out, WANDB_RUN_ID)
    for node in wandb_nodes(cfg):
        with open_dict(node):
            node.name = node.get("name") or Path(out).name
            if recorded.is_file() and not node.get("id"):
                node.id = recorded.read_text().strip()
                node.resume = "allow"
                log.info(f"W&B: continuing run {node.id}")


def wandb_nodes(cfg: DictConfig) -> list[DictConfig]:
    """The configured W&B loggers: Lightning's class or the project's quiet one."""
    return logger_nodes(cfg, "WandbLogger") + logger_nodes(cfg, "QuietWandbLogger")


def record_trackers(loggers: list[Logger], out: str | None) -> None:
    """Write down this run directory's MLflow and W&B runs (made now if they do not exist yet;
    by the process of rank 0, the one that logs)."""
    if not out or rank_zero_only.rank != 0:
        return
    for lg in loggers:
        if isinstance(lg, MLFlowLogger) and lg.run_id:
            _record(Path(out, MLFLOW_RUN_ID), lg.run_id)
        elif isinstance(lg, WandbLogger):
            _record(Path(out, WANDB_RUN_ID), lg.experiment.id)


def _record(path: Path, run_id: str) -> None:
    line = f"{run_id}\n".encode()
    write_atomically(path, lambda file: file.write(line))


def finish_tracker_runs(failed: bool) -> None:
    """End the process's W&B run, if one is open: W&B keeps one run per process, and the next job
    of a multirun (run in the same process) would otherwise log into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


def new_params(lg: Logger, params: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters `lg` may still take: MLflow refuses to change a run's logged value, so
    a resumed run with a larger budget keeps the first values (and says which it kept)."""
    if not isinstance(lg, MLFlowLogger):
        return dict(params)
    logged = lg.experiment.get_run(lg.run_id).data.params
    kept = sorted(k for k, v in params.items() if k in logged and logged[k] != str(v))
    if kept:
        log.info(f"MLflow keeps the first values of {', '.join(kept)} (a run's params are fixed)")
    return {k: v for k, v in params.items() if k not in logged}
