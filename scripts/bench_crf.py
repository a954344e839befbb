"""CRF speed: this framework's `CRF` against pytorch-crf, same parameters and inputs, same run.

    python scripts/bench_crf.py [--repeats 7] [--batch 64] [--device cpu|cuda] [--threads N]

For B=64 sequences (lengths drawn between T/2 and T, so there is padding), T in {64, 256} and
K in {4, 9, 45} tags, it times
- `nll`: the mean negative log-likelihood, forward and backward (gradients for emissions and all
  CRF parameters), and
- `decode`: Viterbi best paths (ours returns a (B, T) tensor; pytorch-crf lists of lists),
each as the median of `--repeats` runs after a warm-up, alternating the two implementations. The
ratio column is pytorch-crf's time / ours (target >= 2 on every row). It is a benchmark, not a
test; the tests check that the two agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torchcrf import CRF as ReferenceCRF  # noqa: E402

from src.models.components.crf import CRF  # noqa: E402


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_row(
    batch: int, steps: int, k: int, repeats: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """{"nll": (ours_s, reference_s), "decode": (...)}: medians over `repeats`."""
    torch.manual_seed(0)
    ours = CRF(k).to(device)
    reference = ReferenceCRF(k, batch_first=True).to(device)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(reference, name).copy_(getattr(ours, name))
    emissions = torch.randn(batch, steps, k, device=device)
    lengths = torch.randint(steps // 2, steps + 1, (batch,), device=device)
    lengths[0] = steps
    mask = torch.arange(steps, device=device) < lengths[:, None]
    tags = torch.randint(0, k, (batch, steps), device=device)

    def our_nll() -> None:
        leaf = emissions.clone().requires_grad_()
        ours.nll(leaf, tags, mask).backward()

    def reference_nll() -> None:
        leaf = emissions.clone().requires_grad_()
        (-reference(leaf, tags, mask, reduction="mean")).backward()

    cases = {
        "nll": (our_nll, reference_nll),
        "decode": (lambda: ours.decode(emissions, mask), lambda: reference.decode(emissions, mask)),
    }
    result = {}
    for name, (fast, slow) in cases.items():
        fast(), slow()  # warm-up
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            times[0].append(timed(fast, device))
            times[1].append(timed(slow, device))
        result[name] = (statistics.median(times[0]), statistics.median(times[1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    args = parser.parse_args()
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {name}, {torch.get_num_threads()} threads, B={args.batch}, medians of {args.repeats}")
    print(
        "|   T |  K | nll ours ms | nll pytorch-crf ms | ratio | decode ours ms "
        "| decode pytorch-crf ms | ratio |"
    )
    print("|----:|---:|---:|---:|---:|---:|---:|---:|")
    worst = float("inf")
    for steps in (64, 256):
        for k in (4, 9, 45):
            row = bench_row(args.batch, steps, k, args.repeats, device)
            cells = [f"| {steps:3d} | {k:2d} "]
            for ours_s, ref_s in row.values():
                cells.append(f"| {ours_s * 1e3:.2f} | {ref_s * 1e3:.2f} | {ref_s / ours_s:.1f}x ")
                worst = min(worst, ref_s / ours_s)
            print("".join(cells) + "|", flush=True)
    print(f"# smallest ratio: {worst:.1f}x (target >= 2)")


if __name__ == "__main__":
    main()
