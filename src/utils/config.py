"""Config checks done before anything is built, so a bad override fails in one short line.

`check_types` walks every node with a `_target_`, resolves the target and compares each value
with the type hint of the matching constructor parameter, and with its bounds when the hint is
annotated (`src/utils/bounds.py`; torch's optimisers get theirs by parameter name). Hydra already
rejects unknown keys (struct mode) and unknown group options (listing the available ones); this
adds the types and ranges.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections import abc
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from annotated_types import Ge, GroupedMetadata, Gt, Le, Lt
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.utils.bounds import OPTIMIZER_BOUNDS
from src.utils.errors import UserError, shown

_SCALARS = {int: "an int", float: "a float", bool: "a bool", str: "a string"}


def _bounds(hint: Any) -> list[Any]:
    """The annotated-types bounds (Gt, Ge, Lt, Le) of an Annotated hint (or of the Annotated
    members of a union, `PositiveInt | None`), groups expanded."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [b for arg in typing.get_args(hint) for b in _bounds(arg)]
    if typing.get_origin(hint) is not typing.Annotated:
        return []
    found: list[Any] = []
    for meta in typing.get_args(hint)[1:]:
        found += list(meta) if isinstance(meta, GroupedMetadata) else [meta]
    return [m for m in found if isinstance(m, Gt | Ge | Lt | Le)]


def _within(value: Any, bounds: list[Any]) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return True  # None where allowed, or a type error reported as such
    checks = {Gt: lambda b: value > b.gt, Ge: lambda b: value >= b.ge}
    checks |= {Lt: lambda b: value < b.lt, Le: lambda b: value <= b.le}
    return all(checks[type(b)](b) for b in bounds)


def _describe_bounds(bounds: list[Any]) -> str:
    signs = {Gt: ("> ", "gt"), Ge: (">= ", "ge"), Lt: ("< ", "lt"), Le: ("<= ", "le")}
    return " and ".join(f"{signs[type(b)][0]}{getattr(b, signs[type(b)][1])}" for b in bounds)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value can be passed where `hint` is expected (lenient on classes)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _matches(value, typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if value is None:
        return False
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    if origin in (list, tuple, abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and Ellipsis not in args:  # tuple[int, int, int]: that many
            return len(value) == len(args) and all(map(_matches, value, args))
        args = [a for a in args if a is not Ellipsis]
        return len(args) != 1 or all(_matches(v, args[0]) for v in value)
    if inspect.isclass(hint) and isinstance(value, str | int | float):
        # a plain value where an object is expected: only if it is one (or a path string)
        return isinstance(value, hint) or (isinstance(value, str) and issubclass(hint, PathLike))
    return True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Annotated:
        return _describe(typing.get_args(hint)[0])
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args and Ellipsis not in args and len(set(args)) == 1:
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[-1]}s"
    if origin in (list, tuple, abc.Sequence):
        return f"a list of {_describe(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    return getattr(hint, "__name__", str(hint))


def _hints(target: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """Type hint per constructor parameter, and whether it takes arbitrary **kwargs."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations (third-party code): do not check
        hints = {}
    params = inspect.signature(target).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {name: hints.get(name, inspect.Parameter.empty) for name in params}, var_kw


def check_types(cfg: DictConfig | ListConfig, path: str = "") -> None:
    """Raise UserError for the first value whose type does not fit its constructor's hint."""
    if isinstance(cfg, ListConfig):
        for i, item in enumerate(cfg):
            if isinstance(item, DictConfig | ListConfig):
                check_types(item, f"{path}[{i}]")
        return
    target_name = cfg.get("_target_") if "_target_" in cfg else None
    hints: dict[str, Any] = {}
    var_kw = True
    if isinstance(target_name, str):
        try:
            hints, var_kw = _hints(get_object(target_name))
        except (ImportError, AttributeError, ValueError, TypeError) as err:
            where = f"{path or 'config'}._target_"
            raise UserError(f"{where}={target_name} cannot be imported ({err})") from None
    for key in cfg:
        key = str(key)
        full = f"{path}.{key}" if path else key
        if key.startswith("_") or OmegaConf.is_missing(cfg, key):
            continue
        value = cfg[key]  # interpolations resolved: `model.loss: ${loss}` is checked too
        if isinstance(value, DictConfig) and "_target_" in value:
            check_types(value, full)
            continue
        if isinstance(value, ListConfig):  # the nodes in a list are checked too
            check_types(value, full)
        if key not in hints:
            if not var_kw:
                takes = ", ".join(k for k in hints if k not in ("self", "args", "kwargs"))
                raise UserError(
                    f"{full} is not a parameter of {target_name} (it takes: {takes}). Remove it, "
                    "or choose configs that fit together (e.g. the VAE needs image data)."
                )
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not _matches(value, hints[key]):
            expected = _describe(hints[key])
            raise UserError(
                f"{full}={shown(value)} has the wrong type: {target_name} expects "
                f"{expected} there. Fix the override: {full}=<{expected}>."
            )
        bounds = _bounds(hints[key])
        if str(target_name).startswith("torch.optim.") and key in OPTIMIZER_BOUNDS:
            bounds.append(OPTIMIZER_BOUNDS[key])
        if not _within(value, bounds):
            raise UserError(
                f"{full}={shown(value)} is out of range: {target_name} needs a value "
                f"{_describe_bounds(bounds)} there. Fix the override: {full}=<a value "
                f"{_describe_bounds(bounds)}>."
            )


def check_groups(cfg: DictConfig, groups: tuple[str, ...]) -> None:
    """`check_types` on each of these top-level groups that the config sets."""
    for group in groups:
        if cfg.get(group):
            check_types(cfg[group], group)


CONF = Path(__file__).resolve().parents[2] / "conf"


def top_level_keys(config_name: str) -> set[str]:
    """The top-level keys a composed `config_name` may have: its own keys and its groups."""
    own = OmegaConf.load(CONF / f"{config_name}.yaml")
    groups = {"hydra"}
    for entry in own.get("defaults", []):
        if isinstance(entry, DictConfig):
            groups |= {str(k).removeprefix("override ").lstrip("/").split("/")[0] for k in entry}
    return (set(own) - {"defaults"}) | groups


def check_top_level(cfg: DictConfig, config_name: str) -> None:
    """UserError for a top-level key no config group or `conf/<config_name>.yaml` defines: a
    misspelling in an experiment file or a config of the user's (`trainr:`) would be kept and
    silently ignored."""
    known = top_level_keys(config_name)
    for key in cfg:
        if str(key) not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"{key!r} is not a top-level key of the {config_name} config (set by an "
                f"experiment file or a config of yours): {hint}Known: {', '.join(sorted(known))}."
            )
