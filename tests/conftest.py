"""Shared fixtures: composing the real configs in-process, synthetic IDX data, subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import DictConfig, open_dict

from src.data.idx import write_idx
from src.data.image_datamodule import FILES
from src.utils.compose import ROOT, compose_run_config

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


# a VAE run on write_fake_mnist's images, small enough for a test (add the data_dir and budget)
TINY_MNIST = [
    "data=mnist",
    "data.val_size=100",
    "data.batch_size=50",
    "data.eval_batch_size=100",
    "model.iwae_samples=2",
]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """The config train.py would get, with its run and log directories under `output_dir`."""
    cfg = compose_run_config(overrides, output_dir, config_name)
    with open_dict(cfg):
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.extras.print_config = False
    return cfg


def data_for(model: str) -> list[str]:
    """`data=<name>` of the first experiment that pairs the model config with data, or nothing
    (the default data): model configs never choose their data."""
    for path in sorted((ROOT / "conf/experiment").glob("*.yaml")):
        lines = [line.strip() for line in path.read_text().splitlines()]
        if f"- override /model: {model}" in lines:
            data = [line.split(":", 1)[1].strip() for line in lines if "override /data:" in line]
            if data:
                return [f"data={data[0]}"]
    return []


@pytest.fixture
def in_run_a(monkeypatch) -> None:
    """Code that asks Hydra for its run directory gets `/runs/a` (without a Hydra app)."""
    import src.utils.run as run

    monkeypatch.setattr(run.HydraConfig, "initialized", staticmethod(lambda: True))
    runtime = SimpleNamespace(runtime=SimpleNamespace(output_dir="/runs/a"))
    monkeypatch.setattr(run.HydraConfig, "get", staticmethod(lambda: runtime))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        return compose_config(list(overrides), tmp_path, config_name)

    return make


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A Trainer without logger, progress bar or model summary; `kwargs` as Trainer's."""
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    return pl.Trainer(**{**quiet, **kwargs})


def write_fake_mnist(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Synthetic IDX files in MNIST's layout: class k images are bright in row band k."""
    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=gen)
        for k in range(10):
            images[labels == k, 2 * k + 4 : 2 * k + 7, 4:24] = 250
        images_stem, labels_stem = FILES[split]
        write_idx(directory / f"{images_stem}.gz", images)
        write_idx(directory / f"{labels_stem}.gz", labels)
    return directory


@pytest.fixture
def fake_mnist_dir(tmp_path: Path) -> Path:
    return write_fake_mnist(tmp_path / "mnist_data")


def run_script(
    *args: str, cwd: Path = ROOT, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a repo script (train.py, eval.py, scripts/...) in a fresh interpreter, with `env`
    added to the environment."""
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_eval(ckpt_path: Path, log_dir: Path) -> dict[str, float]:
    """`eval.py ckpt_path=... stages=[validate]` in a fresh interpreter; its metrics.json."""
    result = run_script(
        "eval.py",
        f"ckpt_path={ckpt_path}",
        "stages=[validate]",
        f"paths.log_dir={log_dir}",
        "extras.print_config=false",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out_dir = next((log_dir / "eval" / "runs").iterdir())
    assert result.stdout.splitlines()[-2:] == [
        f"run directory: {out_dir}",
        f"open it in TensorBoard: tensorboard --logdir {out_dir}",
    ]
    return json.loads((out_dir / "metrics.json").read_text())
