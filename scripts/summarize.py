"""python scripts/summarize.py <multirun_dir> [--metrics val/nelbo test/nelbo ...]

One row per job of a sweep (`python train.py -m ...`, Optuna searches included): the overrides
that made it, its status (ok; failed, diverged or interrupted, from status.json or error.txt;
unfinished: started, never ended; not started: planned by the sweep, no folder) and its final
metrics (metrics.json); then one row per setting with the mean and standard deviation over its
seeds (the runs whose overrides differ only in `seed`). Written to the multirun directory as
summary.md, summary.csv (runs) and summary_seeds.csv (settings), and as TensorBoard HPARAMS
entries, one per setting with `mean/<metric>` and `std/<metric>`, under
<multirun_dir>/summary_tensorboard:

    tensorboard --logdir <multirun_dir>/summary_tensorboard   # the settings, over seeds
    tensorboard --logdir <multirun_dir>                       # every run's own HPARAMS entry
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from src.utils.status import read_status  # noqa: E402
from src.utils.sweep import planned_jobs  # noqa: E402

GROUP_OUT = "seed"  # settings are compared over this override


def _job_order(name: str) -> tuple[bool, int, str]:
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def find_runs(multirun_dir: Path) -> list[Path]:
    """The job directories of a sweep, in job order."""
    jobs = [p for p in multirun_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda p: _job_order(p.name))


def _text(value: Any) -> str:
    """An override's value as it is written on the command line (unescaped)."""
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.key_or_group: _text(o.value()) for o in parsed}


STATES = {"finished": "ok", "running": "unfinished"}  # status.json's words, as listed here


def read_run(job: Path) -> dict[str, Any]:
    overrides = parse_overrides([str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")])
    metrics_file = job / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status = read_status(job).get("status")
    if status is None:
        status = "failed" if (job / "error.txt").is_file() else "unfinished"
    return {
        "job": job.name,
        "overrides": overrides,
        "status": STATES.get(status, status),
        "metrics": metrics,
    }


def not_started(multirun_dir: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs the sweep planned (multirun.yaml) that have no folder: they never started."""
    planned = planned_jobs(multirun_dir) or []
    present = {r["job"] for r in runs}
    return [
        {"job": str(i), "overrides": parse_overrides(job), "status": "not started", "metrics": {}}
        for i, job in enumerate(planned)
        if str(i) not in present
    ]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], metric_names: list[str]) -> tuple[list[dict], list[dict]]:
    """The table of runs and the table of settings (mean and std over seeds of each metric)."""
    keys = list(dict.fromkeys(k for run in runs for k in run["overrides"]))
    keys = [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]  # what varies
    rows = [
        {"job": r["job"], **{k: r["overrides"].get(k, "") for k in keys}, "status": r["status"]}
        | {m: r["metrics"].get(m) for m in metric_names}
        for r in runs
    ]
    setting_keys = [k for k in keys if k != GROUP_OUT]
    settings: dict[tuple, list[dict]] = {}
    for run in runs:
        setting = tuple(run["overrides"].get(k, "") for k in setting_keys)
        settings.setdefault(setting, []).append(run)
    groups = []
    for setting, members in settings.items():
        done = [r for r in members if r["status"] == "ok"]
        row: dict[str, Any] = dict(zip(setting_keys, setting, strict=True))
        row["n"] = len(done)
        for m in metric_names:
            values = [r["metrics"][m] for r in done if isinstance(r["metrics"].get(m), float | int)]
            mean, std = mean_std(values) if values else (math.nan, math.nan)
            row[f"{m} mean"], row[f"{m} std"] = mean, std
        groups.append(row)
    return rows, groups


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def write_tensorboard(groups: list[dict], metric_names: list[str], out: Path) -> None:
    """One HPARAMS entry per setting: its overrides, and the mean and std of each metric."""
    from torch.utils.tensorboard import SummaryWriter

    for i, group in enumerate(groups):
        params = {k: v for k, v in group.items() if not k.endswith((" mean", " std"))}
        results = {}
        for m in metric_names:
            for stat in ("mean", "std"):
                value = group[f"{m} {stat}"]
                if math.isfinite(value):
                    results[f"{stat}/{m}"] = value
        with SummaryWriter(log_dir=str(out / f"setting_{i:03d}")) as writer:
            writer.add_hparams(params, results, run_name=".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--metrics", nargs="*", help="metrics to report (default: all)")
    args = parser.parse_args(argv)
    if not args.multirun_dir.is_dir():
        print(f"error: {args.multirun_dir} is not a directory", file=sys.stderr)
        return 2
    runs = [read_run(job) for job in find_runs(args.multirun_dir)]
    runs = sorted(runs + not_started(args.multirun_dir, runs), key=lambda r: _job_order(r["job"]))
    if not runs:
        print(
            f"error: no runs (job directories with .hydra/) in {args.multirun_dir}", file=sys.stderr
        )
        return 2
    logged = sorted({m for r in runs for m in r["metrics"]})
    unknown = [m for m in args.metrics or [] if m not in logged]
    if unknown:
        close = difflib.get_close_matches(unknown[0], logged, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(
            f"error: no run logged {unknown[0]}{hint}; the runs have: {', '.join(logged)}",
            file=sys.stderr,
        )
        return 2
    metric_names = args.metrics or logged
    rows, groups = summarize(runs, metric_names)
    common = [f"{k}={v}" for k, v in runs[0]["overrides"].items() if k not in rows[0]]
    text = (
        f"# {args.multirun_dir}\n\nEvery run: {' '.join(common) or '(no other overrides)'}\n\n"
        f"## Runs\n\n{markdown(rows)}\n"
        f"## Mean and std over seeds\n\n{markdown(groups)}"
    )
    (args.multirun_dir / "summary.md").write_text(text)
    write_csv(rows, args.multirun_dir / "summary.csv")
    write_csv(groups, args.multirun_dir / "summary_seeds.csv")
    write_tensorboard(groups, metric_names, args.multirun_dir / "summary_tensorboard")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
