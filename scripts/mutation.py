"""Mutation score of the default test suite, per package, with mutmut.

    python scripts/mutation.py [--packages models losses data utils metrics] [--keep DIR]
                               [--recheck]

mutmut (3.x) mutates one function at a time and runs the default suite's tests that call it
(`-m "not slow"`): a mutant is killed when one of them fails. mutmut assumes a `src/` layout
whose package has another name, and this project's package is itself called `src`, so the run
happens in a temporary copy of the tracked files in which the package is renamed `kx` (the
directory, the imports, the `_target_` strings of the configs, the paths in the tests), and the
functions whose call frame Lightning's `save_hyperparameters` reads (the models' constructors)
are not mutated (mutmut runs a mutated function in a frame of its own); nothing else changes.

With `--sample N` it measures a random sample instead of every mutant, for when the whole set
does not fit the time there is: it generates every mutant (running, to do so, the mutants of one
small function), draws N per package with `--seed`, runs those, and gives each package's score
on its sample with a 95% Wilson interval.

With `--keep DIR` a later run refreshes the copy from the working tree and carries on where the
last one stopped: mutmut keeps each verdict whose function did not change. `--recheck` runs only
the survivors again (with `--sample`, the sample's), against the tests written since.

The table gives, per package, killed / (all - skipped - not run) as mutmut counts it (timeouts
count as killed; "not run" are the mutants a stopped run had not reached), and the surviving
mutants are written to `<copy>/survivors.txt` (with `--keep`, in DIR) to read with
`mutmut show <name>` there.

It is a measurement, not a test: the figures are in docs/testing.md.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "kx"
TEXT = {".py", ".yaml", ".toml", ".md", ".txt", ".cfg"}


def copy_renamed(target: Path) -> None:
    """The tracked files of the repository in `target`, with the package `src` renamed."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if not source.is_file():
            continue
        renamed = re.sub(r"^src/", f"{PACKAGE}/", name)
        destination = target / renamed
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in TEXT:
            text = source.read_text(encoding="utf-8")
            text = re.sub(r"\bsrc\.(?=[A-Za-z_])", f"{PACKAGE}.", text)
            text = re.sub(r"\bsrc/", f"{PACKAGE}/", text)
            text = re.sub(r"([\"'])src([\"'*])", rf"\g<1>{PACKAGE}\g<2>", text)
            if renamed.startswith(f"{PACKAGE}/") and source.suffix == ".py":
                model_file = re.fullmatch(rf"{PACKAGE}/models/\w+\.py", renamed) is not None
                text = keep_init_frames(text, model_file)
            destination.write_text(text, encoding="utf-8")
        elif source.suffix == ".ckpt":
            rename_in_checkpoint(source, destination)
        else:
            shutil.copy2(source, destination)


def _renamed(node: object) -> object:
    if isinstance(node, dict):
        return {key: _renamed(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed(value) for value in node]
    if isinstance(node, str):
        return re.sub(r"^src\.", f"{PACKAGE}.", node)
    return node


def rename_in_checkpoint(source: Path, destination: Path) -> None:
    """A shipped checkpoint (the FID classifier) names its classes in its stored config."""
    import torch

    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    if "run_config" in ckpt:
        ckpt["run_config"] = _renamed(ckpt["run_config"])
    torch.save(ckpt, destination)


def keep_init_frames(text: str, model_file: bool = False) -> str:
    """`# pragma: no mutate block` on each function whose call frame Lightning reads: the
    constructors that call `save_hyperparameters` or `save_hparams`, every constructor of a model
    (Lightning walks up the frames of the subclasses' constructors), and `save_hparams`, which
    hands on its caller's frame. A mutated function runs in a frame of its own. mutmut reads the
    pragma at the end of the signature, after its colon."""
    pragma = "  # pragma: no mutate block"
    parts = re.split(r"(?m)^(    def \w+\(.*)$", text)
    for i in range(1, len(parts), 2):
        body = parts[i + 1].split("\n    def ", 1)[0]
        constructor = parts[i].startswith("    def __init__(")
        saves = "save_hyperparameters" in body or "save_hparams(" in body
        if not ("currentframe()" in body or (constructor and (saves or model_file))):
            continue
        if parts[i].endswith(":"):
            parts[i] += pragma
        else:  # the signature's last line is the first one ending in a colon
            parts[i + 1] = re.sub(r"(?m)^(.*\S:)$", rf"\g<1>{pragma}", parts[i + 1], count=1)
    return "".join(parts)


def configure(target: Path, packages: list[str]) -> None:
    """mutmut's settings in the copy's pyproject.toml: what to mutate, what else to copy."""
    pyproject = target / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text())
    only = ", ".join(f'"{PACKAGE}/{p}/*"' for p in packages)
    text += (
        "\n[tool.mutmut]\n"
        f'source_paths = ["{PACKAGE}/"]\n'
        f"only_mutate = [{only}]\n"
        'also_copy = ["conf/", "scripts/", "assets/", "docs/", "train.py", "eval.py", '
        '"requirements.lock", "README.md", "Makefile", "mkdocs.yml"]\n'
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider"]\n'
    )
    pyproject.write_text(text)


def mutmut(target: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=target, env=env, check=False)


def statuses(target: Path) -> dict[str, str]:
    """mutmut's verdict on each mutant so far ("killed", "survived", "not checked", ...)."""
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (line.strip().rpartition(": ") for line in done.stdout.splitlines())
    return {name: outcome for name, sep, outcome in pairs if sep}


def recheck(target: Path, children: tuple[str, ...]) -> None:
    """The survivors, the mutants no test reached (tests written since may reach them) and those
    a stopped run left half-tested again, then the mutants of the functions that changed since
    their verdict (mutmut resets those when it regenerates the mutants, at the start of the first
    run)."""
    before = statuses(target)
    again = {"survived", "no tests", "suspicious", "segfault", "check was interrupted by user"}
    if names := [name for name, outcome in before.items() if outcome in again]:
        mutmut(target, "run", *children, *names)
    after = statuses(target)
    changed = [
        name
        for name, outcome in after.items()
        if outcome == "not checked" and before.get(name) != "not checked"
    ]
    if changed:
        mutmut(target, "run", *children, *changed)


SEED_FUNCTION = f"{PACKAGE}.utils.launcher.x_gpus_per_node__mutmut_*"


def sample(
    target: Path,
    children: tuple[str, ...],
    packages: list[str],
    n: int,
    seed: int,
    recheck: bool = False,
) -> dict[str, collections.Counter]:
    """N mutants per package drawn at random, run, and their verdicts (with `recheck`, the
    sample's survivors run again); the sample's survivors go to `survivors.txt`."""
    if not (target / "mutants").is_dir():
        mutmut(target, "run", *children, SEED_FUNCTION)
    rng = random.Random(seed)
    by_package: dict[str, list[str]] = collections.defaultdict(list)
    for name in sorted(statuses(target)):
        by_package[name.split(".")[1]].append(name)
    drawn = {p: rng.sample(by_package[p], min(n, len(by_package[p]))) for p in packages}
    known = statuses(target)
    again = {"not checked", "survived"} if recheck else {"not checked"}
    if todo := [m for names in drawn.values() for m in names if known[m] in again]:
        mutmut(target, "run", *children, *todo)
    after = statuses(target)
    survivors = [m for names in drawn.values() for m in names if after[m] == "survived"]
    (target / "survivors.txt").write_text("\n".join(sorted(survivors)) + "\n")
    return {p: collections.Counter(after[m] for m in names) for p, names in drawn.items()}


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion killed / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def results(target: Path) -> dict[str, collections.Counter]:
    """Mutant outcomes per package; the survivors' names go to `survivors.txt`."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors = []
    for name, outcome in statuses(target).items():
        if not name.startswith(f"{PACKAGE}."):
            continue
        counts[name.split(".")[1]][outcome] += 1
        if outcome == "survived":
            survivors.append(name.replace(f"{PACKAGE}.", "src.", 1))
    (target / "survivors.txt").write_text("\n".join(survivors) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", nargs="+", default=["models", "losses"])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--recheck", action="store_true", help="run only the survivors again")
    parser.add_argument("--sample", type=int, help="measure N random mutants per package")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --sample's draw")
    args = parser.parse_args(argv)
    target = args.keep or Path(tempfile.mkdtemp(prefix="mutation_"))
    copy_renamed(target)
    configure(target, args.packages)
    start = time.perf_counter()
    children = ("--max-children", str(args.max_children))
    if args.sample:
        drawn = sample(target, children, args.packages, args.sample, args.seed, args.recheck)
        minutes = (time.perf_counter() - start) / 60
        print(
            f"\nmutmut on {args.sample} random mutants per package (seed {args.seed}): "
            f"{minutes:.0f} min; copy in {target}"
        )
        print(
            "| package | sampled | killed | survived | no tests | timeout | score | 95% interval |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for package, c in drawn.items():
            tested = sum(c.values()) - c["skipped"] - c["not checked"]
            killed = c["killed"] + c["timeout"]
            low, high = wilson(killed, tested)
            print(
                f"| src/{package}/ | {tested} | {c['killed']} | {c['survived']} | "
                f"{c['no tests']} | {c['timeout']} | {killed / max(tested, 1):.1%} | "
                f"{low:.1%}-{high:.1%} |"
            )
        return 0
    if args.recheck:
        recheck(target, children)
    else:
        mutmut(target, "run", *children)
    minutes = (time.perf_counter() - start) / 60
    counts = results(target)
    print(
        f"\nmutmut on {', '.join(args.packages)}: {minutes:.0f} min; "
        f"survivors in {target}/survivors.txt"
    )
    print("| package | mutants | killed | survived | no tests | timeout | not run | score |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for package in args.packages:
        c = counts.get(package, collections.Counter())
        not_run = c["not checked"] + c["check was interrupted by user"]
        tested = sum(c.values()) - c["skipped"] - not_run
        score = (c["killed"] + c["timeout"]) / tested if tested else float("nan")
        print(
            f"| src/{package}/ | {sum(c.values())} | {c['killed']} | {c['survived']} | "
            f"{c['no tests']} | {c['timeout']} | {not_run} | {score:.1%} |"
        )
    if not args.keep:
        print(f"(the copy stays in {target}: delete it when done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
