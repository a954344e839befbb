"""Shared by the entry points: start-up extras, error reporting, metrics output, hparams."""

from __future__ import annotations

import logging
import math
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from src.utils.errors import user_message
from src.utils.files import write_json
from src.utils.run_folder import RunFolder
from src.utils.status import read_status
from src.utils.sweep import not_run_message
from src.utils.tracking import logger_nodes, new_params, wandb_nodes

log = logging.getLogger(__name__)


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the composed config as a rich tree (and save it as text next to the run)."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:  # appended: a resumed run adds its tree to the run's first one
        with open(save_to, "a") as f:
            rich.print(tree, file=f)


def _no_advertisement(record: logging.LogRecord) -> bool:
    """Logging filter: drop Lightning's tip to install its cloud logger."""
    return "litlogger" not in record.getMessage()


def apply_extras(cfg: DictConfig, output_dir: str | None) -> None:
    if logging.getLogger().handlers:  # Hydra configured logging: one handler, not two
        for name in ("lightning", "lightning.pytorch"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    # Lightning's own use of a deprecated torch API, and its advertisement, on every run
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_advertisement)
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config") and rank_zero_only.rank == 0:
        print_config_tree(cfg, Path(output_dir) / "config_tree.log" if output_dir else None)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _interrupted(out: str) -> None:
    """Say how the run was stopped and how to go on; in a sweep also which jobs did not run;
    exit with 128 + the signal's number, as a shell reports a process a signal ended."""
    status = read_status(out)
    name = status.get("signal", "SIGTERM")
    saved = status.get("checkpoint_step")
    kept = (
        f"last.ckpt saved at step {saved}"
        if saved is not None
        else "last.ckpt is the latest periodic one"
    )
    print(
        f"interrupted by {name} at step {status.get('step')}: {kept}; continue with "
        f"python train.py resume={out}",
        file=sys.stderr,
    )
    if in_multirun():
        print(not_run_message(Path(out).parent, HydraConfig.get().job.num), file=sys.stderr)
    sys.exit(128 + getattr(signal.Signals, name, signal.SIGTERM).value)


def run_entry(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run `task` in its run directory; how it ends is what the run directory and the exit code
    say. A UserError (or a full disk, a folder that cannot be written) becomes one line on
    stderr and exit code 2; SIGTERM or SIGUSR1 leave a resumable run and exit 128 + signal. A
    failed command leaves no empty run folder and no change to a run it resumed
    (`src.utils.run_folder`); otherwise its folder says `failed` or `diverged` in status.json.

    In a multirun, a job's error is written to `error.txt` in its directory and raised to Hydra,
    which marks the job failed and goes on with the others: the basic and joblib launchers run
    the whole sweep, then exit with the first failure; Optuna records the trial as failed. A
    signal stops the whole sweep (it was meant for all of it) and names the jobs not run.
    """
    out = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    subdir = HydraConfig.get().output_subdir if HydraConfig.initialized() else None
    resumed = subdir not in (None, ".hydra")
    folder = RunFolder(out, resumed, subdir) if out and rank_zero_only.rank == 0 else None
    try:
        result = task(cfg)
    except SIGTERMException:
        if out is None:
            raise
        _interrupted(out)
    except Exception as err:
        message = user_message(err)
        done = (
            folder.failed(message or f"{type(err).__name__}: {err}", in_multirun())
            if folder
            else ""
        )
        if in_multirun():
            Path(out, "error.txt").write_text("".join(traceback.format_exception(err)))
            raise
        if message is not None:
            print(f"error: {message}" + (f" ({done})" if done else ""), file=sys.stderr)
            sys.exit(2)
        raise
    report_run_dir(cfg)
    return result


def report_run_dir(cfg: DictConfig) -> None:
    """The run's directory, and the command that opens it in TensorBoard when it logs there."""
    if not HydraConfig.initialized() or rank_zero_only.rank != 0:
        return
    out = HydraConfig.get().runtime.output_dir
    print(f"run directory: {out}")
    if logger_nodes(cfg, "TensorBoardLogger"):
        print(f"open it in TensorBoard: tensorboard --logdir {out}")
    for node in logger_nodes(cfg, "MLFlowLogger"):
        uri = str(node.get("tracking_uri"))
        server = uri.startswith(("http://", "https://"))
        print(f"open it in MLflow: {uri if server else f'mlflow ui --backend-store-uri {uri}'}")
    for node in wandb_nodes(cfg):
        if node.get("offline"):
            print(f"upload it to W&B: wandb sync {out}/wandb/offline-run-*")


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from Lightning's metric tensors, without the `_step`/`_epoch` duplicates."""
    out = {}
    for name, value in metrics.items():
        if name.endswith(("_step", "_epoch")):
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def save_metrics(metrics: Mapping[str, float], output_dir: str | None) -> None:
    if output_dir:
        clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        write_json(Path(output_dir, "metrics.json"), clean)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat `a/b/c` keys with plain values, for TensorBoard's HPARAMS tab."""
    keys = ("model", "data", "loss", "trainer", "seed", "tags")
    container = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if prefix == "model/loss":  # the same node as the top-level `loss`
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(node, list):
            out[prefix] = str(node)
        elif node is None or isinstance(node, bool | int | float | str):
            out[prefix] = "None" if node is None else node

    for key in keys:
        if key in container:
            walk(key, container[key])
    return out


def log_final_hparams(loggers: list[Logger], cfg: DictConfig, metrics: Mapping[str, float]) -> None:
    """Write the hyperparameters with the final metrics (as `final/<name>`) to every logger."""
    final = {f"final/{k}": v for k, v in metrics.items() if math.isfinite(v)}
    params = flat_hparams(cfg)
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):  # the HPARAMS tab: parameters next to results
            lg.log_hyperparams(params, metrics=final)
        else:
            lg.log_hyperparams(new_params(lg, params))
        lg.finalize("success")
