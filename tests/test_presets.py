"""Hardware presets: `trainer=bf16` trains in bfloat16 mixed precision on a CPU, close to float32.

`trainer=fp16` (float16 with a loss scale) and `trainer=gpu`/`ddp` need a GPU: only their
composition is checked here."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.train import train
from tests.conftest import compose_config, write_fake_mnist

SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "logger=csv",
    "callbacks=none",
    "seed=1",
]


def _vae(tmp_path: Path) -> list[str]:
    data = write_fake_mnist(tmp_path / "mnist", n_train=800, n_test=100)
    return ["model=vae", "data=mnist", f"data.data_dir={data}", "data.val_size=100"]


def _tagger(tmp_path: Path) -> list[str]:
    return ["model=crf_tagger", "data=people_daily", "data.limit_sentences=300"]


@pytest.mark.parametrize(("model", "key"), [(_vae, "val/nelbo"), (_tagger, "val/loss")])
def test_bf16_mixed_precision_trains_close_to_float32(tmp_path: Path, model, key: str) -> None:
    """After 10 steps the validation loss in bf16-mixed is within 1% of float32's (measured
    2026-12-01 after 20 steps: 5e-5 relative for the VAE, 1.5e-3 for the tagger), and not equal
    to it: the preset does change the arithmetic."""
    runs = {
        name: train(compose_config([*model(tmp_path), *SHORT, *extra], tmp_path / name))
        for name, extra in (("fp32", []), ("bf16", ["trainer=bf16"]))
    }
    fp32, bf16 = runs["fp32"][key], runs["bf16"][key]
    assert bf16 == pytest.approx(fp32, rel=0.01) and bf16 != fp32, (fp32, bf16)


def test_the_precision_presets_compose(make_cfg) -> None:
    assert make_cfg("trainer=bf16").trainer.precision == "bf16-mixed"
    fp16 = make_cfg("trainer=fp16").trainer
    assert (fp16.precision, fp16.accelerator) == ("16-mixed", "gpu")
