"""Build objects from `_target_` nodes: one node, or every entry of the callbacks/logger groups.

`instantiate` also serves what runs without Lightning (`scripts/tag.py`), so Lightning is imported
by the functions that build its callbacks and loggers, not by this module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hydra
from hydra.errors import InstantiationException
from hydra.utils import get_object
from omegaconf import DictConfig

from src.utils.errors import UserError
from src.utils.trust import trusted_target

if TYPE_CHECKING:
    from lightning.pytorch import Callback
    from lightning.pytorch.loggers import Logger


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` (containers converted), re-raising a constructor's UserError
    as itself: Hydra wraps it, and the user should see the one line, not the wrapper. `kwargs`
    (a tagger's vocabulary of thousands of words) go to the constructor as they are: through
    Hydra they would become a config first, seconds of copying."""
    try:
        if kwargs and not node.get("_partial_", False):
            return hydra.utils.instantiate(node, _partial_=True, _convert_="all")(**kwargs)
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
    from lightning.pytorch import Callback

    return _instantiate_all(cfg, Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    from lightning.pytorch.loggers import Logger

    return _instantiate_all(cfg, Logger)


def evaluation_callbacks(cfg: DictConfig | None, trusted: Sequence[str] = ()) -> list[Callback]:
    """The measuring callbacks of a saved run config (their class says `evaluation = True`: toy
    density, sample quality), to evaluate a checkpoint as its training evaluated it. Only trusted
    names are looked at (`src.utils.trust`); the training-only callbacks (checkpointing, early
    stopping, progress bars) are left out."""
    nodes = {
        name: node
        for name, node in (cfg or {}).items()
        if isinstance(node, DictConfig)
        and trusted_target(node.get("_target_"), trusted)
        and getattr(get_object(node._target_), "evaluation", False)
    }
    return instantiate_callbacks(DictConfig(nodes))
