"""The lock file: check an environment against it, compare a fresh resolution with it, rewrite it.

    python scripts/check_lock.py requirements.lock            # after `make install`
    python scripts/check_lock.py --strict requirements.lock   # CI: nothing beyond the lock either
    python scripts/check_lock.py --compare requirements.lock  # what a fresh resolution changed
    python scripts/check_lock.py --write requirements.lock    # this environment becomes the lock

The lock is a pip constraints file (`name==version` lines) covering every runtime and extra
dependency of pyproject.toml. A check fails, in one line per problem, when the lock misses a
dependency, when an installed package differs from its locked version (`--strict`: or is not
locked at all), or when torch is the CPU-only wheel that no torchvision loads against.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import tomllib
from datetime import date
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "kexue-lab"
# installed by venv itself, not by the project
TOOLING = {"pip", "setuptools", "wheel"}
# the CPU-only wheel on this kind of machine's disk: no torchvision from the registry loads with it
REFUSED = {"torch": "2.13.0"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, str]:
    """`name==version` lines (comments and blank lines skipped), by canonical name."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"line {number} of the lock is not name==version: {raw!r}")
        pins[canonical(name.strip())] = version.strip()
    return pins


def required_names(pyproject: dict) -> set[str]:
    """The canonical names of every runtime and optional dependency in pyproject.toml."""
    project = pyproject["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {canonical(re.split(r"[\s\[<>=!~;(]", spec, maxsplit=1)[0]) for spec in specs}


def installed() -> dict[str, str]:
    """This environment's distributions (the project itself and venv's tooling left out)."""
    found = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {n: v for n, v in found.items() if n != PROJECT and n not in TOOLING}


def problems(
    pins: dict[str, str], required: set[str], present: dict[str, str], strict: bool
) -> list[str]:
    out = [f"{name} is a dependency but not in the lock" for name in sorted(required - set(pins))]
    for name, version in sorted(pins.items()):
        if REFUSED.get(name) == version or (name == "torch" and "+cpu" in version):
            out.append(f"the lock pins {name}=={version}, the CPU-only wheel: re-lock")
        if name in present and present[name] != version:
            out.append(f"{name} {present[name]} is installed, the lock says {version}")
    if strict:
        out += [
            f"{name} {present[name]} is installed but not locked"
            for name in sorted(set(present) - set(pins))
        ]
    return out


def lock_text(present: dict[str, str]) -> str:
    header = (
        "# The exact versions `make test` last passed with: a pip constraints file, used by\n"
        "# `make install`. Rewrite it with `make lock` (the newest compatible versions), then\n"
        "# run `make test`.\n"
        f"# Resolved {date.today()} on Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}.\n"
    )
    return header + "".join(f"{name}=={present[name]}\n" for name in sorted(present))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--strict", action="store_true", help="also refuse unlocked packages")
    mode.add_argument("--compare", action="store_true", help="list the differences, exit 0")
    mode.add_argument("--write", action="store_true", help="write this environment as the lock")
    args = parser.parse_args(argv)
    required = required_names(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    present = installed()
    if args.write:
        found = problems(present, required, present, strict=False)
        if found:
            print("\n".join(f"error: {p}" for p in found), file=sys.stderr)
            return 1
        args.lock.write_text(lock_text(present))
        print(f"wrote {args.lock}: {len(present)} packages; now run `make test`")
        return 0
    if not args.lock.is_file():
        print(f"error: {args.lock} does not exist: run `make lock` to make it", file=sys.stderr)
        return 1
    try:
        pins = read_lock(args.lock.read_text())
    except ValueError as err:
        print(f"error: {args.lock}: {err}", file=sys.stderr)
        return 1
    if args.compare:
        changed = [
            f"{n} {pins.get(n, '-')} -> {v}" for n, v in sorted(present.items()) if pins.get(n) != v
        ]
        print(f"resolved now vs {args.lock}: " + ("; ".join(changed) or "the same versions"))
        return 0
    found = problems(pins, required, present, args.strict)
    if found:
        print("\n".join(f"error: {p}" for p in found), file=sys.stderr)
        return 1
    print(f"{len(present)} installed packages match {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
