"""Training speed through the framework's Trainer versus a plain PyTorch loop on the same model.

    python scripts/bench_trainer.py [--steps 300] [--warmup 30] [--repeats 3] [--threads N]
                                    [--verbose] [override ...]
    python scripts/bench_trainer.py model=vae_conv data.batch_size=256

Both sides are built from the real training config (composed with Hydra's compose API, default
model=vae data=fashion_mnist data.binarize=true; extra Hydra overrides are passed through):

- framework: the data module, model, callbacks (default set), TensorBoard logger and Trainer built
  the way `src/train.py:train` builds them, with validation and test turned off and
  `max_steps=--steps`. A timing callback starts the clock at the start of step `--warmup` and stops
  it at `on_train_end` (start-up excluded); the time to the end of the last batch is shown too.
- baseline: a fresh model from the same config and seed, the same data module's
  `train_dataloader()`, the model's own optimiser, and a hand-written
  `zero_grad / backward / step` loop over `model.elbo_terms(x)["nelbo"].mean()`.

The two sides run alternately (A B A B ...). The figures are steps per second, median of the
repeats, and their ratio framework / baseline (target >= 0.9); it is a benchmark, not a test.
The per-repeat ratios are printed too: on a shared machine they are steadier than the medians.
`--threads N` sets torch's thread count for both sides (default: torch's own choice).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from src.train import ConfigInCheckpoint, build  # noqa: E402
from src.utils.compose import compose_run_config  # noqa: E402
from src.utils.config import check_groups  # noqa: E402
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers  # noqa: E402

DEFAULT_OVERRIDES = ["model=vae", "data=fashion_mnist", "data.binarize=true"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(pl.Callback):
    """Clock from the start of training step `warmup` to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.last_batch_end: float | None = None
        self.end: float | None = None
        self.steps_at_end = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.start is None and trainer.global_step == self.warmup:
            synchronize(module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step >= trainer.max_steps > 0:  # the last step: wait for the device
            synchronize(module.device)
        self.last_batch_end = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        synchronize(module.device)
        self.end = time.perf_counter()
        self.steps_at_end = trainer.global_step

    def rates(self) -> tuple[float, float]:
        """Steps/s to `on_train_end` and to the end of the last batch."""
        if self.start is None or self.end is None or self.last_batch_end is None:
            raise RuntimeError("the timed steps did not run: is --warmup < --steps?")
        steps = self.steps_at_end - self.warmup
        return steps / (self.end - self.start), steps / (self.last_batch_end - self.start)


def compose_config(
    overrides: list[str], steps: int, output_dir: str, defaults: list[str] = DEFAULT_OVERRIDES
) -> DictConfig:
    """The training config as `python train.py` would see it (`defaults`, then `overrides`), with
    validation and test off."""
    bench = [
        "train=true",
        "test=false",
        f"+trainer.max_steps={steps}",
        "trainer.max_epochs=100000",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
    ]
    cfg = compose_run_config([*defaults, *overrides, *bench], output_dir)
    with open_dict(cfg):
        # no validation, so no val metric: early stopping must not insist on one
        if OmegaConf.select(cfg, "callbacks.early_stopping._target_"):
            cfg.callbacks.early_stopping.strict = False
    return cfg


def run_framework(
    cfg: DictConfig, output_dir: str, warmup: int, quiet: bool
) -> tuple[float, float, torch.device]:
    """Steps/s through the Trainer, built as `src/train.py:train` builds it (to `on_train_end`
    and to the end of the last batch), and the device it trained on."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    check_groups(cfg, ("data", "loss", "model", "trainer"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg)
    timer = StepTimer(warmup)
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), ConfigInCheckpoint(cfg, {}), timer]
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all"
    )
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        trainer.fit(model, datamodule=datamodule)
    return (*timer.rates(), trainer.strategy.root_device)


def run_baseline(cfg: DictConfig, steps: int, warmup: int, device: torch.device) -> float:
    """Steps/s of a plain PyTorch loop on a fresh model from the same config and seed."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model.to(device).train()
    optimizer = model.configure_optimizers()["optimizer"]
    step, start = 0, 0.0
    while step < steps:
        for batch in datamodule.train_dataloader():
            if step == warmup:
                synchronize(device)
                start = time.perf_counter()
            x, _ = batch
            x = x.to(device)
            loss = model.elbo_terms(x)["nelbo"].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
    synchronize(device)
    return (steps - warmup) / (time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps at the start")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for both sides (default: leave torch's default)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Lightning's output (summary, progress bar)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=vae_conv")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.steps:
        parser.error("need 0 <= --warmup < --steps")
    if args.repeats < 1:
        parser.error("need --repeats >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("need --threads >= 1")
    return args


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.verbose:
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="lightning")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        cfg = compose_config(args.overrides, args.steps, tmp)
        framework: list[float] = []
        framework_batch: list[float] = []
        baseline: list[float] = []
        for i in range(args.repeats):
            on_end, on_batch, device = run_framework(
                cfg, f"{tmp}/run{i}", args.warmup, not args.verbose
            )
            framework.append(on_end)
            framework_batch.append(on_batch)
            baseline.append(run_baseline(cfg, args.steps, args.warmup, device))
            print(
                f"repeat {i + 1}/{args.repeats}: framework {on_end:.1f} steps/s "
                f"(to last batch end {on_batch:.1f}), baseline {baseline[-1]:.1f} steps/s",
                flush=True,
            )
    fw, fw_batch, base = (statistics.median(v) for v in (framework, framework_batch, baseline))
    ratio = fw / base
    model_name = OmegaConf.select(cfg, "model._target_").rsplit(".", 1)[-1]
    print()
    print(
        f"model {model_name}, batch size {cfg.data.batch_size}, {args.steps} steps "
        f"({args.warmup} warm-up), {args.repeats} repeats, device {device}, torch threads "
        f"{torch.get_num_threads()}, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"overrides: {' '.join(args.overrides) or 'none'}"
    )
    print()
    print("| side | median steps/s | runs (steps/s) | vs baseline |")
    print("|---|---:|---|---:|")
    runs = ", ".join(f"{v:.1f}" for v in framework)
    print(f"| framework (Trainer, to on_train_end) | {fw:.1f} | {runs} | {ratio:.2f} |")
    runs = ", ".join(f"{v:.1f}" for v in framework_batch)
    print(f"| framework (to last batch end) | {fw_batch:.1f} | {runs} | {fw_batch / base:.2f} |")
    runs = ", ".join(f"{v:.1f}" for v in baseline)
    print(f"| baseline (plain PyTorch loop) | {base:.1f} | {runs} | 1.00 |")
    paired = [f / b for f, b in zip(framework, baseline, strict=True)]
    print()
    print(
        f"per-repeat ratios (each framework run / the baseline run after it): "
        f"{', '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f}"
    )
    print()
    print(f"ratio: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
