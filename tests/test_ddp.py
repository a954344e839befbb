"""DDP: `trainer=ddp_sim` (two CPU processes, batch b/2 each) trains as one process with batch b.

Lightning shards each epoch's order with a DistributedSampler: rank r takes positions r, r+2, ...
of one permutation, so the two half batches of a step make the single process's batch of that
step when it uses the same sampler (strategy=ddp on one device), and DDP averages the two halves'
gradients. The CNN baseline has no noise, so the weights must agree to rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_script, write_fake_mnist

RUN = [
    "model=cnn_sigmoid",
    "model.net.width=8",
    "data=mnist",
    "data.val_size=100",
    "data.eval_batch_size=50",
    "trainer.max_epochs=2",
    "trainer.limit_test_batches=1",
    "callbacks=none",
    "logger=csv",
    "extras.print_config=false",
]


def _train(log_dir: Path, data: Path, *extra: str) -> Path:
    result = run_script(
        "train.py", *RUN, f"data.data_dir={data}", f"paths.log_dir={log_dir}", *extra
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (log_dir / "train" / "runs").iterdir()
    return run


@pytest.mark.slow
def test_ddp_sim_matches_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")
    one = _train(
        tmp_path / "one",
        data,
        "trainer=ddp_sim",
        "trainer.devices=1",
        "data.batch_size=50",
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp_path}/one_ckpt",
    )
    two = _train(
        tmp_path / "two",
        data,
        "trainer=ddp_sim",
        "data.batch_size=25",
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp_path}/two_ckpt",
    )
    # one run directory for the two processes, its config written once, its metrics by rank 0
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    weights = [
        torch.load(next((tmp_path / f"{k}_ckpt").glob("*.ckpt")), weights_only=True)
        for k in ("one", "two")
    ]
    assert weights[0]["global_step"] == weights[1]["global_step"] == 20
    for name, value in weights[0]["state_dict"].items():
        torch.testing.assert_close(weights[1]["state_dict"][name], value, rtol=0, atol=1e-5)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    for key in ("train/loss", "val/loss", "val/acc"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], abs=1e-4), key


@pytest.mark.slow
def test_ddp_sim_jobs_of_a_multirun_each_get_one_directory(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")
    result = run_script(
        "train.py",
        "-m",
        *RUN,
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "data.batch_size=100",
        "seed=1,2",
        f"data.data_dir={data}",
        f"paths.log_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job in ("0", "1"):
        assert "val/loss" in json.loads((sweep / job / "metrics.json").read_text())
