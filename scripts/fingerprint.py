"""Every logged number of a short seeded run of every model, to check that a refactoring kept them.

    python scripts/fingerprint.py record DIR [--only NAME ...] [--jobs 2]
    python scripts/fingerprint.py compare BEFORE AFTER [--tol 1e-6]

`record` trains each experiment config (and each model config no experiment uses) for a few
batches of one epoch with the TensorBoard and CSV loggers (so the figures are drawn too), and
writes `DIR/<name>.json`: every value of its `metrics.csv` by metric name and step, with
`metrics.json`. `compare` prints the values that differ by more than `tol` (relative to
max(1, |value|)), the metrics no longer logged and, as news only, those logged for the first time,
and
exits 1 when there is any.

It is a check for the person moving code, not a test: the runs take a few minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    "trainer.max_epochs=1",
    "trainer.max_time=null",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "++trainer.val_check_interval=1.0",
    "logger=[tensorboard,csv]",
    "callbacks.rich_progress_bar=null",
]


def runs() -> dict[str, list[str]]:
    """name -> overrides: every experiment, then every model config no experiment overrides."""
    experiments = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
    used = set()
    for name in experiments:
        for line in (ROOT / f"conf/experiment/{name}.yaml").read_text().splitlines():
            if line.strip().startswith("- override /model:"):
                used.add(line.split(":", 1)[1].strip())
    models = sorted(p.stem for p in (ROOT / "conf/model").glob("*.yaml"))
    table = {f"experiment={e}": [f"experiment={e}"] for e in experiments}
    table.update({f"model={m}": [f"model={m}"] for m in models if m not in used})
    return table


def record_one(name: str, overrides: list[str], out: Path) -> str:
    with tempfile.TemporaryDirectory() as logs:
        command = [sys.executable, "train.py", *overrides, *SHORT, f"paths.log_dir={logs}"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            return f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
        values: dict[str, dict[str, float]] = {}
        for path in Path(logs).rglob("metrics.csv"):
            with path.open() as f:
                for row in csv.DictReader(f):
                    step = row.pop("step", "")
                    for key, value in row.items():
                        if value not in ("", None):
                            logged = values.setdefault(key, {})
                            logged[f"step {step} #{len(logged)}"] = float(value)
        for path in Path(logs).rglob("metrics.json"):
            summary = json.loads(path.read_text())
            values["metrics.json"] = {
                k: float(v) for k, v in summary.items() if isinstance(v, int | float)
            }
    text = json.dumps(values, indent=1, sort_keys=True)
    (out / f"{name.replace('=', '-')}.json").write_text(text)
    return f"{name}: {sum(len(v) for v in values.values())} values"


def record(out: Path, only: list[str] | None, jobs: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    table = {k: v for k, v in runs().items() if not only or k.split("=", 1)[1] in only}
    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(lambda kv: record_one(*kv, out), table.items()):
            print(line, flush=True)
    return 0


def close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a))


def compare(before: Path, after: Path, tol: float) -> int:
    problems = 0
    for path in sorted(before.glob("*.json")):
        other = after / path.name
        if not other.is_file():
            print(f"{path.stem}: not recorded after")
            problems += 1
            continue
        a, b = json.loads(path.read_text()), json.loads(other.read_text())
        for key in sorted(set(a) | set(b)):
            if key not in b:
                print(f"{path.stem}: {key} no longer logged")
                problems += 1
                continue
            if key not in a:
                print(f"{path.stem}: {key} new (not a difference)")
                continue
            for step in sorted(set(a[key])):
                x, y = a[key].get(step, math.nan), b[key].get(step, math.nan)
                if not close(x, y, tol):
                    print(f"{path.stem}: {key} at {step}: {x} -> {y}")
                    problems += 1
    print(f"{problems} differences" if problems else "the same numbers")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--only", nargs="+")
    rec.add_argument("--jobs", type=int, default=2)
    cmp = sub.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.out, args.only, args.jobs)
    return compare(args.before, args.after, args.tol)


if __name__ == "__main__":
    sys.exit(main())
