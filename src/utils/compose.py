"""Compose a run's config in-process, as `python train.py ...` would get it (tests, benchmarks,
notebooks): the Hydra node is registered with HydraConfig and removed, the run directory is
`output_dir`."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.utils.resume import register_resolvers

ROOT = Path(__file__).resolve().parents[2]


def compose_run_config(
    overrides: list[str], output_dir: str | Path, config_name: str = "train"
) -> DictConfig:
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg
