"""What the entry points check before Hydra starts, so that bad input fails in one line and
writes nothing: the command line composes (a misspelt key, an unknown option, a malformed
override or a YAML syntax error in a config file), the log folder is writable, and for
`train.py` a resume is one that may go ahead (`src.utils.resume`)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from src.utils.checkpoint import read_checkpoint, run_config
from src.utils.errors import UserError, clipped, shown
from src.utils.launcher import quiet_sacct
from src.utils.optuna_study import continue_study
from src.utils.resume import MULTIRUN, NothingToResume, register_resolvers, resume_argv
from src.utils.sweep import check_sweep_to_resume

CONF = Path(__file__).resolve().parents[2] / "conf"


def _one_override_per_key(overrides: list[str]) -> list[str]:
    """A sweep's overrides with each discrete sweep at its first value (others dropped)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UserError(
            f"{shown(' '.join(overrides), 200)}: not valid overrides "
            f"({str(err).splitlines()[0]}); write key=value, group=option or +key=value."
        ) from None
    kept = []
    for override in parsed:
        if not override.is_sweep_override():
            kept.append(override.input_line)
        elif override.is_discrete_sweep():
            first = next(iter(override.sweep_string_iterator()))
            kept.append(f"{override.get_key_element()}={first}")
    return kept


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


def _missing_key(config_name: str, overrides: list[str], key: str) -> str:
    """What the parent of a key that does not exist holds, for the message."""
    others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    parent = key.rpartition(".")[0]
    try:
        node = OmegaConf.select(_compose(config_name, others), parent) if parent else None
    except Exception:
        node = None
    if isinstance(node, DictConfig):
        return f"{parent} has {', '.join(str(k) for k in node)}"
    return f"{parent or 'the config'} has no such key"


def composition_error(err: Exception, config_name: str, overrides: list[str]) -> UserError:
    """One line for what Hydra would report in many."""
    text = str(err).strip()
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark else "a config file"
        return UserError(f"{where}: YAML syntax error ({err.problem or err}); fix the file.")
    if isinstance(err, MissingConfigException) and "Available options" in text:
        found = re.search(r"Could not find '([^']+)'", text)
        missing = found.group(1) if found else "?"
        group = missing.rpartition("/")[0] or missing
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return UserError(
            f"{group}={shown(missing.rpartition('/')[2])}: no such option. "
            f"Available options in '{group}': {', '.join(options)}."
        )
    found = re.match(r"Could not override '([^']+)'", text)
    if found:
        key = found.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), "")
        group = key.partition("@")[0]
        if "/" in group and (CONF / group).is_dir():  # a nested group: its option is missing
            options = sorted(path.stem for path in (CONF / group).glob("*.yaml"))
            return UserError(
                f"{key}={shown(value)}: no such option. "
                f"Available options in '{group}': {', '.join(options)}."
            )
        return UserError(
            f"{key}={clipped(value)}: no such key ({_missing_key(config_name, overrides, key)}). "
            f"Fix the spelling, or add a new key with +{key}={clipped(value)}."
        )
    return UserError(text.splitlines()[0] if text else type(err).__name__)


def check_composes(argv: list[str], config_name: str) -> DictConfig | None:
    """The config the command line composes to (a sweep at its first values), or None when the
    command line carries Hydra flags (--help, --cfg, ...) that Hydra should answer itself."""
    if any(a.startswith("-") and a not in MULTIRUN for a in argv[1:]):
        return None
    overrides = _one_override_per_key([a for a in argv[1:] if a not in MULTIRUN])
    try:
        return _compose(config_name, overrides)
    except (HydraException, yaml.YAMLError) as err:
        raise composition_error(err, config_name, overrides) from None


def check_writable(log_dir: str) -> None:
    """The log folder can be written: a temporary file in it, or in its nearest existing parent."""
    folder = Path(log_dir).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        descriptor, name = tempfile.mkstemp(dir=folder, prefix=".kexue-write-check-")
        os.close(descriptor)
        os.unlink(name)
    except OSError as err:
        raise UserError(
            f"paths.log_dir={log_dir} cannot be written ({err.strerror or err}): pick a folder "
            "you can write, e.g. paths.log_dir=/tmp/logs."
        ) from None


def check_checkpoint_to_evaluate(cfg: DictConfig | None) -> None:
    """`eval.py ckpt_path=...` names a readable, safe checkpoint with a config it may build (with
    the modules of `trust=[...]`)."""
    path = OmegaConf.select(cfg, "ckpt_path", throw_on_missing=False) if cfg is not None else None
    if path:
        trusted = list(OmegaConf.select(cfg, "trust") or [])
        run_config(path, read_checkpoint(path, trusted), trusted)


def prepare(argv: list[str], config_name: str) -> list[str]:
    """The command line to hand to Hydra, after the checks above; a refusal is one line on
    stderr and exit code 2 (a finished run asked to resume: a line on stdout, exit 0)."""
    register_resolvers()
    try:
        if config_name == "train":
            argv = resume_argv(argv)
            check_sweep_to_resume(argv)
        cfg = check_composes(argv, config_name)
        if config_name == "eval":
            check_checkpoint_to_evaluate(cfg)
        argv = continue_study(cfg, argv)
        launcher = OmegaConf.select(cfg, "hydra.launcher._target_") if cfg is not None else None
        if "submitit" in str(launcher):  # only submitit polls sacct; others need not import it
            quiet_sacct()
        log_dir = OmegaConf.select(cfg, "paths.log_dir") if cfg is not None else None
        if log_dir:
            check_writable(str(log_dir))
    except NothingToResume as done:
        print(done)
        sys.exit(0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return argv
