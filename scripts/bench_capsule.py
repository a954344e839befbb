"""Training speed of the capsule models and the routing layer's share of a step.

    python scripts/bench_capsule.py [--batch 128] [--repeats 5] [--threads N] [--device cpu|cuda]

For each model (`capsnet_small`, `cnn_sigmoid`, `capsnet` CPU preset and paper size) it times a
full training step (forward, margin loss, backward, Adam step) on a random 28x28 batch and prints
images per second, median of `--repeats` runs of 5 steps after a warm-up. For the capsule nets it
also times the routing layer alone, forward and backward on inputs of the shape it sees in the
step, and prints that time as a share of the step. The CNN baseline is the reference: the ratio
column is a model's images/s over the CNN's, measured in the same run. A benchmark, not a test.
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from src.losses.margin import margin_loss  # noqa: E402
from src.models.components.capsnets import CNNSigmoid, SabourCapsNet, SmallCapsNet  # noqa: E402

MODELS: dict[str, Callable[[], nn.Module]] = {
    "cnn_sigmoid": CNNSigmoid,
    "capsnet_small": SmallCapsNet,
    "capsnet_small revised": lambda: SmallCapsNet(revised=True, squash_constant=0.5),
    "capsnet (CPU preset)": lambda: SabourCapsNet(conv_channels=64, n_maps=8),
    "capsnet (paper size)": SabourCapsNet,
}


def median_time(
    fn: Callable[[], None], repeats: int, device: torch.device, steps: int = 5
) -> float:
    """Median seconds per call over `repeats` runs of `steps` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def bench(name: str, batch: int, repeats: int, device: torch.device) -> tuple[float, float | None]:
    """(seconds per training step, seconds of routing forward+backward or None)."""
    torch.manual_seed(0)
    net = MODELS[name]().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    images = torch.rand(batch, 1, 28, 28, device=device)
    targets = F.one_hot(torch.randint(0, 10, (batch,), device=device), 10).float()

    def step() -> None:
        scores, _ = net(images)
        loss = margin_loss(scores, targets).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = median_time(step, repeats, device)
    routing = getattr(net, "routing", None)
    if routing is None:
        return step_s, None
    with torch.no_grad():
        features = net.backbone(images) if hasattr(net, "backbone") else net.conv(images)
        capsules = net.primary(features)
    capsules.requires_grad_()

    def route() -> None:
        routing(capsules).sum().backward()

    return step_s, median_time(route, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {where}, {torch.get_num_threads()} threads, batch {args.batch}, median of "
        f"{args.repeats}"
    )
    print("| model | params | train images/s | vs cnn_sigmoid | routing share of a step |")
    print("|---|---:|---:|---:|---:|")
    baseline = None
    for name in MODELS:
        step_s, routing_s = bench(name, args.batch, args.repeats, device)
        speed = args.batch / step_s
        baseline = baseline or speed
        params = sum(p.numel() for p in MODELS[name]().parameters())
        share = f"{routing_s / step_s:.0%}" if routing_s is not None else "-"
        print(
            f"| {name} | {params / 1e3:.0f}k | {speed:.0f} | {speed / baseline:.2f}x | {share} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
