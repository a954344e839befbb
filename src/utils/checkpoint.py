"""Load a trained run back from one of its checkpoints, for evaluation and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.utils.errors import UserError


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """The checkpoint's dictionary, loaded weights-only; a clear error when it is not one."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist: point it at a .ckpt file of a run.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path} is not a readable checkpoint ({first}). It may be truncated or corrupt: use "
            "another checkpoint of the run, e.g. last.ckpt."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(
            f"{path} holds no model weights (no state_dict): it is not a Lightning checkpoint."
        )
    return ckpt


def run_config(ckpt_path: str | Path, ckpt: dict[str, Any]) -> DictConfig:
    """The config of the run that wrote the checkpoint: its run directory's, else its copy."""
    for parent in Path(ckpt_path).resolve().parents[:3]:
        saved = parent / ".hydra" / "config.yaml"
        if saved.is_file():
            return OmegaConf.load(saved)
    if "run_config" in ckpt:
        return OmegaConf.create(ckpt["run_config"])
    raise UserError(
        f"no config found for {ckpt_path}: neither a .hydra/config.yaml in its run directory nor a "
        "copy inside the checkpoint. Evaluate a checkpoint written by train.py."
    )


def load_model(ckpt_path: str | Path, cfg: DictConfig, ckpt: dict[str, Any]) -> Any:
    """Instantiate the run's model from `cfg` and load the checkpoint's weights into it."""
    from src.utils.config import check_types
    from src.utils.instantiate import instantiate

    check_types(cfg.model, "model")
    model = instantiate(cfg.model, **ckpt.get("model_kwargs", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UserError(
            f"{ckpt_path} does not fit the run's model config ({str(err).splitlines()[0]}). "
            "Was the "
            "config edited after training?"
        ) from None
    return model.eval()
