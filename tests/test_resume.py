"""Resuming: a run killed mid-epoch (SIGKILL) and resumed from its last.ckpt ends with the same
weights and metrics as the run that was never interrupted, in the same run directory."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.utils.resume import resume_argv
from tests.conftest import run_script, write_fake_mnist

# 500 training images in batches of 50: 10 steps an epoch; last.ckpt every 4 steps
RUN = [
    "data=mnist",
    "data.val_size=100",
    "data.batch_size=50",
    "data.eval_batch_size=100",
    "model.iwae_samples=2",
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=1",
    "callbacks.last_checkpoint.every_n_train_steps=4",
    "callbacks.early_stopping=null",
    "extras.print_config=false",
]
KILL_STEP = 15  # epoch 1, batch 5; the latest last.ckpt is from step 12, mid-epoch


class KillAt(pl.Callback):
    """SIGKILL the process after training step `step` of a run that was not resumed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            os.kill(os.getpid(), signal.SIGKILL)


def _train(log_dir: Path, *extra: str) -> Path:
    result = run_script("train.py", *RUN, f"paths.log_dir={log_dir}", *extra)
    assert result.returncode in (0, -signal.SIGKILL, 128 + signal.SIGTERM), result.stderr[-2000:]
    (run,) = (log_dir / "train" / "runs").iterdir()
    return run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    data = write_fake_mnist(root / "data")
    whole = _train(root / "whole", f"data.data_dir={data}")
    killed = _train(
        root / "killed",
        f"data.data_dir={data}",
        "+callbacks.kill._target_=tests.test_resume.KillAt",
        f"+callbacks.kill.step={KILL_STEP}",
    )
    interrupted = {
        "metrics": (killed / "metrics.json").exists(),
        "step": torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"],
        "config": (killed / ".hydra" / "config.yaml").read_text(),
    }
    # the saved overrides may not build a class from outside the project: given again, it is ours
    result = run_script(
        "train.py", f"resume={killed}", "+callbacks.kill._target_=tests.test_resume.KillAt"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # SIGTERM instead of SIGKILL: last.ckpt is saved at the very step, the status says so
    terminated = _train(
        root / "terminated",
        f"data.data_dir={data}",
        "+callbacks.stop._target_=tests.test_faults.SignalAt",
        f"+callbacks.stop.step={KILL_STEP}",
        f"+callbacks.stop.signum={int(signal.SIGTERM)}",
    )
    stopped = json.loads((terminated / "status.json").read_text())
    result = run_script(
        "train.py", f"resume={terminated}", "+callbacks.stop._target_=tests.test_faults.SignalAt"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        "whole": whole,
        "resumed": killed,
        "root": root,
        "interrupted": interrupted,
        "terminated": terminated,
        "stopped": stopped,
    }


@pytest.mark.slow
def test_killed_run_was_interrupted_mid_epoch(runs: dict) -> None:
    assert not runs["interrupted"]["metrics"]
    assert runs["interrupted"]["step"] == 12  # 10 steps an epoch: mid-epoch


@pytest.mark.slow
def test_resumed_run_ends_as_the_uninterrupted_one(runs: dict) -> None:
    whole, resumed = _weights(runs["whole"]), _weights(runs["resumed"])
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)
    metrics = [json.loads((runs[k] / "metrics.json").read_text()) for k in ("whole", "resumed")]
    assert metrics[0].keys() == metrics[1].keys() and "train/nelbo" in metrics[0]
    for key, value in metrics[0].items():
        assert metrics[1][key] == pytest.approx(value, rel=1e-6), key


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_resumes_to_the_same_end(runs: dict) -> None:
    stopped = runs["stopped"]
    assert (stopped["status"], stopped["step"], stopped["checkpoint_step"]) == (
        "interrupted",
        KILL_STEP,
        KILL_STEP,
    )
    whole, resumed = _weights(runs["whole"]), _weights(runs["terminated"])
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)
    metrics = [json.loads((runs[k] / "metrics.json").read_text()) for k in ("whole", "terminated")]
    assert metrics[0] == pytest.approx(metrics[1], rel=1e-6)
    assert json.loads((runs["terminated"] / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_resumed_run_continues_in_its_own_directory(runs: dict) -> None:
    resumed = runs["resumed"]
    assert len(list((runs["root"] / "killed" / "train" / "runs").iterdir())) == 1
    # the first config is kept; the resumed invocation's is recorded beside it
    assert (resumed / ".hydra" / "config.yaml").read_text() == runs["interrupted"]["config"]
    (record,) = (resumed / ".hydra").glob("resumed_*")
    assert f"resume={resumed}" in (record / "overrides.yaml").read_text()
    # one TensorBoard run, the same curve as the uninterrupted run's (the killed process's
    # events after its checkpoint are purged, not shown twice)
    assert not [p for p in (resumed / "tensorboard").iterdir() if p.is_dir()]
    curves = []
    for run in (runs["whole"], resumed):
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        curves.append([(e.step, e.value) for e in events.Scalars("train/nelbo_step")])
    assert curves[0] == curves[1] and len(curves[0]) == 30


def test_resume_of_a_directory_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    result = run_script("train.py", f"resume={tmp_path}", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: resume=") and "\n" not in result.stderr.strip()


def test_resume_argv_puts_the_runs_overrides_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / ".hydra" / "overrides.yaml").write_text(
        "- experiment=vae_fmnist\n- trainer.max_epochs=3\n"
    )
    (run / "checkpoints").mkdir()
    for path in (run / "checkpoints" / "last.ckpt", tmp_path / "x.ckpt"):
        torch.save({"state_dict": {}, "global_step": 7}, path)
    ckpt = f"ckpt_path={run}/checkpoints/last.ckpt"
    assert resume_argv(["train.py", ckpt, "trainer.max_epochs=5"]) == [
        "train.py",
        "experiment=vae_fmnist",
        ckpt,
        "trainer.max_epochs=5",
    ]
    assert resume_argv(["train.py", f"resume={run}"])[1:3] == [
        "experiment=vae_fmnist",
        "trainer.max_epochs=3",
    ]
    # a checkpoint outside of a run directory starts a new run: the command line is left as it is
    assert resume_argv(["train.py", f"ckpt_path={tmp_path}/x.ckpt"]) == [
        "train.py",
        f"ckpt_path={tmp_path}/x.ckpt",
    ]


@pytest.mark.parametrize(
    ("restarts", "has_last", "resumes"),
    [(None, True, False), ("0", True, False), ("1", True, True), ("3", True, True),
     ("1", False, False), ("x", True, False), ("", True, False)],
)  # fmt: skip
def test_a_requeued_slurm_job_goes_on_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarts: str | None, has_last: bool,
    resumes: bool,
) -> None:  # fmt: skip
    from src.utils.resume import requeued_checkpoint

    last = tmp_path / "checkpoints" / "last.ckpt"
    if has_last:
        last.parent.mkdir()
        last.write_bytes(b"")
    if restarts is None:
        monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    else:
        monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    assert requeued_checkpoint(str(tmp_path)) == (str(last) if resumes else None)
    assert requeued_checkpoint(None) is None
