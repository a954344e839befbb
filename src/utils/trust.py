"""What a file from elsewhere may ask to build: a checkpoint's stored config and model arguments,
or a run directory's saved config, are data from a stranger until checked.

Hydra's `instantiate` calls whatever `_target_` names, `pathlib.Path.write_text` as readily as a
model class. So the parts of such a config that get built (`model`, `data`, and the evaluation
callbacks) may name only classes of the project's models, losses, data modules and callbacks, or
torch's optimisers and learning-rate schedulers: the name is checked before anything is imported,
the class after. A model of your own, from outside the project, is built only from modules you name
(`trusted`: `trust=[my_models]` on eval.py's command line). A checkpoint's
`model_kwargs` (a tagger's vocabulary and tags) must be plain data: strings, numbers, booleans,
None, and lists and string-keyed dicts of them, with no `_target_`-like keys. Anything else is
refused in one line that names it. (A saved data config's `download` is switched off where it
is read: see `src.utils.checkpoint.run_config`.)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.utils.errors import UserError, shown

TRUSTED_MODULES = ("src.models", "src.losses", "src.data", "src.callbacks", "torch.optim")
TRUSTED_BASES = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
# Lightning's bases by name: a script that builds only torch modules (scripts/tag.py) checks
# without importing Lightning, and a class from Lightning has it imported already
LIGHTNING_BASES = (
    "lightning.pytorch.callbacks.callback.Callback",
    "lightning.pytorch.core.datamodule.LightningDataModule",
)
# the groups of a saved run config that evaluation and the scripts build
BUILT_GROUPS = ("model", "data")
PLAIN = (str, int, float, bool, type(None))


def trusted_target(name: Any, trusted: Sequence[str] = ()) -> bool:
    """Whether `_target_: name` may be built from a file from elsewhere (the project's classes,
    and those of the `trusted` modules)."""
    modules = (*TRUSTED_MODULES, *trusted)
    if not isinstance(name, str) or not any(
        name == module or name.startswith(f"{module}.") for module in modules
    ):
        return False
    try:
        target = get_object(name)
    except Exception:
        return False
    if not inspect.isclass(target):
        return False
    names = {f"{base.__module__}.{base.__qualname__}" for base in target.__mro__}
    return issubclass(target, TRUSTED_BASES) or bool(names & set(LIGHTNING_BASES))


def _plain(node: Any) -> Any:
    return (
        OmegaConf.to_container(node, resolve=True)
        if isinstance(node, DictConfig | ListConfig)
        else node
    )


def check_targets(node: Any, where: str, path: str, trusted: Sequence[str] = ()) -> None:
    """UserError for the first `_target_` under `node` that `trusted_target` refuses."""
    node = _plain(node)
    if isinstance(node, Mapping):
        if "_target_" in node and not trusted_target(node["_target_"], trusted):
            module = str(node["_target_"]).rpartition(".")[0] or "<module>"
            raise UserError(
                f"{where}: {path}._target_={shown(node['_target_'])} is refused: a checkpoint or "
                "a saved config may only build the project's models, losses, data modules and "
                "callbacks and torch's optimisers and schedulers. Use a checkpoint you trust; "
                f"if the class is your own, trust its module: trust=[{module}]."
            )
        for key, value in node.items():
            check_targets(value, where, f"{path}.{key}", trusted)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            check_targets(value, where, f"{path}[{i}]", trusted)


def check_plain_data(node: Any, where: str, path: str) -> None:
    """UserError unless `node` is plain data with no special (`_`-prefixed) keys."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise UserError(
                    f"{where}: {path} holds the key {shown(key)}; model arguments stored in a "
                    "checkpoint must be plain data (lists, strings, numbers), so it is refused."
                )
            check_plain_data(value, where, f"{path}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            check_plain_data(value, where, f"{path}[{i}]")
    elif not isinstance(node, PLAIN):
        raise UserError(
            f"{where}: {path} holds a {type(node).__name__}; model arguments stored in a "
            "checkpoint must be plain data (lists, strings, numbers), so it is refused."
        )


def check_run_config(
    cfg: Any, where: str, trusted: Sequence[str] = (), groups: Sequence[str] = BUILT_GROUPS
) -> None:
    """The `groups` of a saved run config that get built (dotted paths: `model.encoder`) name
    only trusted classes."""
    if not isinstance(cfg, Mapping | DictConfig):
        raise UserError(f"{where}: the stored run config is not a mapping. Refused.")
    for group in groups:
        node: Any = cfg
        for key in group.split("."):
            node = node.get(key) if isinstance(node, Mapping | DictConfig) else None
        check_targets(node, where, group, trusted)  # resolved group by group
