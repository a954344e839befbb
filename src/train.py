"""Training: build data, model, callbacks, loggers and trainer from the config, fit, test."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from src.utils.config import check_groups
from src.utils.errors import UserError
from src.utils.instantiate import instantiate, instantiate_callbacks, instantiate_loggers
from src.utils.run import apply_extras, log_final_hparams, save_metrics, scalar_metrics

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
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **data_model_kwargs(datamodule))
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
    checkpoint_extras = ConfigInCheckpoint(cfg, data_model_kwargs(datamodule))
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), checkpoint_extras]
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
