"""Training: build data, model, callbacks, loggers and trainer from the config, fit, test."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from src.utils.config import check_groups
from src.utils.errors import UserError
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers
from src.utils.run import apply_extras, log_final_hparams, save_metrics, scalar_metrics

log = logging.getLogger(__name__)


class ConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint (plain containers: weights-only safe)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, ckpt: dict
    ) -> None:
        ckpt["run_config"] = self.config


def output_dir() -> str | None:
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    return datamodule, model


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured model; returns the final metrics."""
    out = output_dir()
    check_groups(cfg, ("data", "loss", "model", "trainer", "callbacks", "logger"))
    apply_extras(cfg, out)
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise UserError(f"ckpt_path={cfg.ckpt_path} does not exist: point it at a .ckpt file.")
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg)
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), ConfigInCheckpoint(cfg)]
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all"
    )
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer.callback_metrics)
    if cfg.get("test"):
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        if best:
            log.info(f"testing the best checkpoint {best}")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    save_metrics(metrics, out)
    if trainer.is_global_zero:
        log_final_hparams(trainer.loggers, cfg, metrics)
    return metrics
