"""`key=value` arguments of the scripts in scripts/, checked against the script's defaults."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.utils.errors import UserError


def parse_key_values(argv: list[str], defaults: dict[str, Any], script: str) -> DictConfig:
    """The defaults updated by `argv`; unknown keys, bare words and a missing `ckpt_path`
    (when the defaults mark it "???") are one-line UserErrors."""
    unknown = [a.split("=")[0] for a in argv if a.split("=")[0] not in defaults]
    if unknown or any("=" not in a for a in argv):
        keys = ", ".join(defaults)
        raise UserError(f"usage: {script} key=value ... with keys {keys}; got {argv}")
    args = OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.from_dotlist(argv))
    if "ckpt_path" in defaults and OmegaConf.is_missing(args, "ckpt_path"):
        raise UserError("ckpt_path=<run_dir>/checkpoints/<file>.ckpt is required.")
    return args
