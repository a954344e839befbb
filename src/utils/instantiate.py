"""Build objects from `_target_` nodes: one node, or every entry of the callbacks/logger groups."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from src.utils.errors import UserError


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` (containers converted), re-raising a constructor's UserError
    as itself: Hydra wraps it, and the user should see the one line, not the wrapper."""
    try:
        return hydra.utils.instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def _instantiate_all(cfg: DictConfig | None, kind: type) -> list[Any]:
    objects: list[Any] = []
    for name, node in (cfg or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            obj = instantiate(node)
            if not isinstance(obj, kind):
                raise TypeError(f"{name}: {node._target_} is not a {kind.__name__}")
            objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return _instantiate_all(cfg, Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_all(cfg, Logger)
