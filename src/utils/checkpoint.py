"""Checkpoints: read back weights-only and checked (evaluation, sampling, tagging, resume), with
torch alone (`checkpoint_io.py` writes them atomically for the Trainer). What makes a run
resumable mid-epoch is `src.data.resumable` (the loader) and `src.callbacks.resumable_training`
(what a checkpoint adds for it)."""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.utils.errors import UserError
from src.utils.trust import BUILT_GROUPS, check_plain_data, check_run_config


def read_checkpoint(
    ckpt_path: str | Path, trusted: Sequence[str] = (), groups: Sequence[str] = BUILT_GROUPS
) -> dict[str, Any]:
    """The checkpoint's dictionary, loaded weights-only and checked as data from a stranger (see
    `src.utils.trust`; `trusted`: modules of your own its config may build; `groups`: the parts of
    its config that will be built); a one-line UserError when it is not a safe, readable
    checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist: point it at a .ckpt file of a run.")
    size = path.stat().st_size
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not for the user
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} is not a readable checkpoint: it holds objects other than tensors and "
            "plain containers, or is no checkpoint at all, and unpickling those could run code, "
            "so it is refused. Use a checkpoint written by train.py."
        ) from None
    except Exception:
        raise UserError(
            f"{path} is not a readable checkpoint: empty, truncated or corrupt ({size} bytes). "
            "Use another checkpoint of the run, e.g. last.ckpt."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(
            f"{path} holds no model weights (no state_dict): it is not a Lightning checkpoint."
        )
    ckpt["state_dict"] = uncompiled_names(ckpt["state_dict"])
    check_plain_data(ckpt.get("model_kwargs", {}), str(path), "model_kwargs")
    if "run_config" in ckpt:
        check_run_config(ckpt["run_config"], f"{path}: run_config", trusted, groups)
    return ckpt


def uncompiled_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The weights under their module's own names: a network wrapped by `torch.compile(net)`
    saves `net._orig_mod.weight` for `net.weight`."""
    return {re.sub(r"(?<![^.])_orig_mod\.", "", name): value for name, value in state_dict.items()}


def run_config(
    ckpt_path: str | Path,
    ckpt: dict[str, Any],
    trusted: Sequence[str] = (),
    groups: Sequence[str] = BUILT_GROUPS,
) -> DictConfig:
    """The config of the run that wrote the checkpoint: its run directory's, else its copy;
    checked like the checkpoint itself, and with data downloads switched off (a saved config is
    never followed to the network)."""
    cfg = None
    for parent in Path(ckpt_path).resolve().parents[:3]:
        saved = parent / ".hydra" / "config.yaml"
        if saved.is_file():
            cfg = OmegaConf.load(saved)
            check_run_config(cfg, str(saved), trusted, groups)
            break
    else:
        if "run_config" in ckpt:
            cfg = OmegaConf.create(ckpt["run_config"])
    if cfg is None:
        raise UserError(
            f"no config found for {ckpt_path}: neither a .hydra/config.yaml in its run directory "
            "nor a copy inside the checkpoint. Evaluate a checkpoint written by train.py."
        )
    if OmegaConf.select(cfg, "data.download"):
        cfg.data.download = False
    return cfg


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
            "Was the config edited after training?"
        ) from None
    return model.eval()
