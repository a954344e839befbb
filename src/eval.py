"""Evaluation of a checkpoint with the config of the run that wrote it."""

from __future__ import annotations

import logging

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from src.train import output_dir
from src.utils.checkpoint import load_model, read_checkpoint, run_config
from src.utils.config import check_groups, check_top_level
from src.utils.errors import UserError
from src.utils.instantiate import evaluation_callbacks, instantiate, instantiate_loggers
from src.utils.run import apply_extras, save_metrics, scalar_metrics
from src.utils.status import write_status

log = logging.getLogger(__name__)
STAGES = ("validate", "test")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    out = output_dir()
    check_top_level(cfg, "eval")
    check_groups(cfg, ("trainer", "logger"))
    apply_extras(cfg, out)
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise UserError(
            f"stages={list(cfg.stages)}: unknown {sorted(unknown)}; use any of {list(STAGES)}."
        )
    trusted = list(cfg.get("trust") or [])
    ckpt = read_checkpoint(cfg.ckpt_path, trusted)
    run_cfg = run_config(cfg.ckpt_path, ckpt, trusted)
    with open_dict(run_cfg):
        run_cfg.paths = cfg.paths  # this evaluation's directories, not the training run's
    run_cfg = OmegaConf.merge(run_cfg, cfg.get("overrides") or {})
    model = load_model(cfg.ckpt_path, run_cfg, ckpt)
    check_groups(run_cfg, ("data",))
    datamodule = instantiate(run_cfg.data)
    if run_cfg.get("seed") is not None:
        pl.seed_everything(run_cfg.seed, workers=True)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        logger=instantiate_loggers(cfg.get("logger")) or False,
        callbacks=evaluation_callbacks(run_cfg.get("callbacks"), trusted),
        _convert_="all",
    )
    metrics: dict[str, float] = {}
    for stage in cfg.stages:
        getattr(trainer, stage)(model, datamodule=datamodule)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    save_metrics(metrics, out)
    if out:
        write_status(out, "finished", checkpoint=str(cfg.ckpt_path))
    return metrics
