"""Training: build data, model, callbacks, loggers and trainer from the config, fit, test; resume
an interrupted run in its own directory."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.callbacks.divergence_guard import DivergenceGuard
from src.callbacks.resumable_training import ResumableTraining
from src.callbacks.run_status import RunStatus
from src.utils.checkpoint import read_checkpoint
from src.utils.checkpoint_io import AtomicCheckpointIO
from src.utils.config import check_groups, check_top_level
from src.utils.errors import UserError
from src.utils.instantiate import instantiate, instantiate_callbacks, instantiate_loggers
from src.utils.resume import check_budget, last_checkpoint, requeued_checkpoint, resumed_run
from src.utils.run import apply_extras, log_final_hparams, save_metrics, scalar_metrics
from src.utils.status import write_status
from src.utils.sweep import finished_job
from src.utils.tracking import (
    continue_trackers,
    finish_tracker_runs,
    record_trackers,
    require_logger_packages,
)

log = logging.getLogger(__name__)


class ConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint (plain containers: weights-only safe),
    and the model arguments the data module derived (e.g. a tagger's vocabulary)."""

    def __init__(self, cfg: DictConfig, model_kwargs: dict[str, Any]) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.model_kwargs = model_kwargs

    def on_save_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, ckpt: dict
    ) -> None:
        ckpt["run_config"] = self.config
        if self.model_kwargs:
            ckpt["model_kwargs"] = self.model_kwargs


def output_dir() -> str | None:
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def data_model_kwargs(datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """Model arguments only the data knows (a vocabulary, tag names), if it has any."""
    model_kwargs = getattr(datamodule, "model_kwargs", None)
    return model_kwargs() if callable(model_kwargs) else {}


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The data module and the model the config names, checked against each other; `cfg`'s
    `monitor: model` becomes the model's metric (`resolve_monitor`) for the callbacks built
    next."""
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **data_model_kwargs(datamodule))
    check_data_fits(model, datamodule)
    resolve_monitor(cfg, model)
    return datamodule, model


def check_data_fits(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """The model reads examples of the shape the data gives, when both declare one
    (`example_shape`, where None is any size); a model config never chooses its data, so a
    mismatch is named here."""
    wanted = getattr(model, "example_shape", None)
    given = getattr(datamodule, "example_shape", None)
    if wanted is None or given is None:
        return
    if len(wanted) != len(given) or any(
        w not in (None, g) for w, g in zip(wanted, given, strict=False)
    ):
        shape = ", ".join("any" if w is None else str(w) for w in wanted)
        raise UserError(
            f"{type(model).__name__} reads examples of shape [{shape}], but "
            f"{type(datamodule).__name__} gives {list(given)}: choose data=<a config in conf/data "
            "with that shape> (data=toy2d for 2-d points), or an experiment that pairs this model "
            "with its data (conf/experiment)."
        )


def resolve_monitor(cfg: DictConfig, model: pl.LightningModule) -> None:
    """`monitor: model` is the model's headline metric (its class's `monitor`) and
    `monitor_mode: model` its direction; a metric of one's own needs its direction said. The
    resolved pair is written into `cfg`, for the callbacks, the sweeper and the run's hparams, and
    the model's plateau scheduler follows it."""
    monitor, mode = cfg.get("monitor"), cfg.get("monitor_mode")
    own, own_mode = getattr(model, "monitor", None), getattr(model, "monitor_mode", "min")
    if monitor == "model":
        if own is None:
            raise UserError(
                f"monitor=model, but {type(model).__name__} names no metric of its own: set "
                "monitor=<a metric it logs, e.g. val/loss> and monitor_mode=min or max."
            )
        monitor = own
    if mode == "model":
        if monitor not in (own, None):
            raise UserError(
                f"monitor={monitor} is not {type(model).__name__}'s own metric ({own}), so its "
                "direction is unknown: set monitor_mode=min or monitor_mode=max."
            )
        mode = own_mode if monitor else "min"
    if mode not in ("min", "max"):
        raise UserError(f"monitor_mode={mode!r}: choose min, max or model.")
    with open_dict(cfg):
        cfg.monitor, cfg.monitor_mode = monitor, mode
    if monitor is not None:
        model.monitor = monitor


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """`ckpt_path`, or `resume`'s last.ckpt. `train.py` has checked them before Hydra started
    (`src.utils.resume.resume_argv`); an in-process call gets the same one-line errors here."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume and resumed_run(resume, None) is None:
        raise UserError(
            f"resume={resume} is not a run directory (no .hydra/config.yaml in it): give the "
            "directory of a train.py run, e.g. logs/train/runs/<run>."
        )
    if resume and not ckpt_path:
        ckpt_path = str(Path(resume) / "checkpoints" / "last.ckpt")
    if ckpt_path and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise UserError("resume or ckpt_path in a multirun: resume one run at a time, without -m.")
    return ckpt_path


def checkpoint_to_test(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """The best checkpoint by `monitor` (`test_ckpt: best`, when one was saved) or None: the
    weights at the end of fitting (`test_ckpt: last`)."""
    checkpoint = trainer.checkpoint_callback
    if cfg.get("test_ckpt", "best") == "last" or not isinstance(checkpoint, ModelCheckpoint):
        return None
    if checkpoint.best_model_path:
        log.info(f"testing the best checkpoint {checkpoint.best_model_path}")
    return checkpoint.best_model_path or None


def run_callbacks(cfg: DictConfig, out: str | None, model_kwargs: dict) -> list[pl.Callback]:
    """The configured callbacks, then those every run has: the config in each checkpoint, exact
    mid-epoch resume, a divergence guard (unbounded, so it stops on NaN or inf only, unless the
    config sets one) and the status file with the clean stop on SIGTERM or SIGUSR1."""
    callbacks = [
        *instantiate_callbacks(cfg.get("callbacks")),
        ConfigInCheckpoint(cfg, model_kwargs),
        ResumableTraining(),
    ]
    if not any(isinstance(c, DivergenceGuard) for c in callbacks):
        callbacks.append(DivergenceGuard())
    if out:
        callbacks.append(RunStatus(out))
    return callbacks


def previous_metrics(out: str | None) -> dict[str, float]:
    """The metrics a resumed run had already written: kept where the resumed part adds none."""
    path = Path(out, "metrics.json") if out else None
    if path is None or not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    return {k: v for k, v in saved.items() if isinstance(v, int | float)}


def point_ddp_processes_at_this_job() -> None:
    """Lightning starts the other DDP processes by running the command line again with
    `hydra.run.dir` set to the run's directory. In a multirun job that must be this job's
    overrides and directory, not the sweep's: one directory per run, whatever the processes."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


@contextmanager
def isolated_job() -> Iterator[None]:
    """A multirun runs its jobs one after another in one process: each starts with the environment
    it found and leaves no process group (Lightning's DDP launcher sets both) or W&B run behind."""
    environ = dict(os.environ)
    failed = True
    try:
        yield
        failed = False
    finally:
        finish_tracker_runs(failed)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured model; returns the final metrics."""
    with isolated_job():
        return fit_and_test(cfg)


def fit_and_test(cfg: DictConfig) -> dict[str, float]:
    out = output_dir()
    check_top_level(cfg, "train")
    check_groups(cfg, ("data", "loss", "model", "trainer", "callbacks", "logger"))
    require_logger_packages(cfg)
    if cfg.get("test_ckpt", "best") not in ("best", "last"):
        raise UserError(f"test_ckpt={cfg.test_ckpt!r}: choose 'best' (by monitor) or 'last'.")
    apply_extras(cfg, out)
    ckpt_path = checkpoint_to_resume(cfg)
    if not ckpt_path and (ckpt_path := requeued_checkpoint(out)):
        log.info(f"SLURM requeued this job: it goes on from {ckpt_path}")
    if cfg.get("resume_sweep") and out:
        if (kept := finished_job(out)) is not None:
            log.info(f"{out} finished in an earlier run of the sweep: kept as it is")
            return kept
        if not ckpt_path and (ckpt_path := last_checkpoint(out)):
            log.info(f"this job of the sweep was interrupted: it goes on from {ckpt_path}")
    resumed = bool(ckpt_path and resumed_run(cfg.get("resume"), ckpt_path))
    resumed_step = None
    if ckpt_path and resumed:
        checkpoint = read_checkpoint(ckpt_path)
        if cfg.get("train"):
            check_budget(checkpoint, cfg.trainer.get("max_epochs"))
        resumed_step = int(checkpoint.get("global_step", 0))
        log.info(f"resuming {ckpt_path} in {out}")
    continue_trackers(cfg, out, resumed_step)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg)
    callbacks = run_callbacks(cfg, out, data_model_kwargs(datamodule))
    loggers = instantiate_loggers(cfg.get("logger"))
    record_trackers(loggers, out)
    point_ddp_processes_at_this_job()
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        _convert_="all",
    )
    metrics = previous_metrics(out) if resumed else {}
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics.update(scalar_metrics(trainer.callback_metrics))
    if cfg.get("test"):
        tested = checkpoint_to_test(cfg, trainer)
        trainer.test(model, datamodule=datamodule, ckpt_path=tested, weights_only=True)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    if trainer.is_global_zero:
        save_metrics(metrics, out)
        log_final_hparams(trainer.loggers, cfg, metrics)
        if out:
            write_status(out, "finished", step=trainer.global_step)
    return metrics
