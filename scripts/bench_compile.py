"""What `model.compile=true` (torch.compile of the model's networks) gains in training speed, for
the VAE, the CRF tagger and the capsule net, on this machine.

    python scripts/bench_compile.py [--steps 200] [--warmup 40] [--repeats 3] [--models vae ...]

Each model trains through the framework's Trainer (built as `src/train.py` builds it, validation
and test off; `scripts/bench_trainer.py` owns that set-up) with `model.compile=false` and `true`,
alternately (A B A B ...). Two figures per side, medians of the repeats:
- steps/s from step `--warmup` to the end of training, compilation (and recompilations for new
  shapes in the first steps) excluded;
- the wall time of the whole fit, compilation included: what a short run pays.
The ratio compiled / eager is printed even when it is below 1: on a small CPU model it often is.
It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from bench_trainer import compose_config, run_framework  # noqa: E402

HEADER = (
    "| model | eager steps/s | compiled steps/s | compiled / eager | eager fit s | compiled fit s |"
)
MODELS = {
    "vae": ["model=vae", "data=fashion_mnist", "data.binarize=true"],
    "crf_tagger": ["experiment=crf_cws"],
    "capsnet": ["model=capsnet", "data=fashion_mnist", "loss=margin"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=40, help="untimed steps (compilation)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.steps:
        parser.error("need 0 <= --warmup < --steps")
    if args.repeats < 1:
        parser.error("need --repeats >= 1")
    return args


def timed_run(overrides: list[str], args: argparse.Namespace, folder: str) -> tuple[float, float]:
    """(steps/s after the warm-up, wall seconds of the whole fit) of one run."""
    cfg = compose_config(overrides, args.steps, folder, defaults=[])
    torch._dynamo.reset()  # no compiled code carried over from the previous run
    start = time.perf_counter()
    rate, _, _ = run_framework(cfg, folder, args.warmup, quiet=True)
    return rate, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()[0]
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_compile_") as tmp:
        for name in args.models:
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for i in range(args.repeats):
                for compiled in (False, True):
                    overrides = [*MODELS[name], f"model.compile={str(compiled).lower()}"]
                    runs[compiled].append(timed_run(overrides, args, f"{tmp}/{name}{i}{compiled}"))
                    rate, wall = runs[compiled][-1]
                    side = "compiled" if compiled else "eager"
                    print(f"{name} {side} {i + 1}/{args.repeats}: {rate:.1f} steps/s, {wall:.1f} s")
            eager, comp = (statistics.median(r for r, _ in runs[c]) for c in (False, True))
            eager_wall, comp_wall = (
                statistics.median(w for _, w in runs[c]) for c in (False, True)
            )
            ratios[name] = comp / eager
            rows.append(
                f"| {name} | {eager:.1f} | {comp:.1f} | {comp / eager:.2f} | "
                f"{eager_wall:.0f} | {comp_wall:.0f} |"
            )
    print()
    print(
        f"{args.steps} steps ({args.warmup} warm-up), {args.repeats} repeats, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print()
    print(HEADER)
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return ratios


if __name__ == "__main__":
    main()
