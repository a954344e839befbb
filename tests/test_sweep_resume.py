"""A basic sweep run again in its own directory (`resume_sweep=<multirun dir>`,
`src/utils/sweep.py`): the refusals, and (slow) a sweep killed mid-way and run again, whose
finished job is kept byte for byte, whose interrupted job goes on from its last.ckpt, and whose
unstarted job runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.utils.errors import UserError
from src.utils.status import write_status
from src.utils.sweep import check_sweep_to_resume, finished_job
from tests.conftest import ROOT, TINY_MNIST, run_script, write_fake_mnist

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _sweep_folder(tmp_path: Path, task: list[str], sweeper: str = BASIC) -> Path:
    folder = tmp_path / "multiruns" / "2026-12-02_00-00-00_000000"
    folder.mkdir(parents=True)
    cfg = {"hydra": {"sweeper": {"_target_": sweeper, "params": None}, "overrides": {"task": task}}}
    OmegaConf.save(OmegaConf.create(cfg), folder / "multirun.yaml")
    return folder


def test_the_same_command_may_resume_its_sweep(tmp_path: Path) -> None:
    folder = _sweep_folder(tmp_path, ["seed=1,2", "trainer.max_epochs=2"])
    check_sweep_to_resume(
        ["train.py", "-m", "trainer.max_epochs=2", "seed=1,2", f"resume_sweep={folder}"]
    )
    again = _sweep_folder(tmp_path / "b", ["seed=1,2", f"resume_sweep={folder}"])
    check_sweep_to_resume(["train.py", "--multirun", "seed=1,2", f"resume_sweep={again}"])
    check_sweep_to_resume(["train.py", "seed=1"])  # nothing to check
    check_sweep_to_resume(["train.py", "resume_sweep=null"])


@pytest.mark.parametrize(
    ("argv", "sweeper", "says"),
    [
        (["seed=1,2"], BASIC, "give it with the sweep's -m command"),
        (["-m", "seed=1,3"], BASIC, "ran the overrides `seed=1,2`, not `seed=1,3`"),
        (["-m", "seed=1,2", "+x=1"], BASIC, "give the same ones"),
        (
            ["-m", "seed=1,2"],
            "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
            "continues its study",
        ),
    ],
)
def test_a_sweep_that_cannot_be_resumed_so_is_refused_in_one_line(
    tmp_path: Path, argv: list[str], sweeper: str, says: str
) -> None:
    folder = _sweep_folder(tmp_path, ["seed=1,2"], sweeper)
    with pytest.raises(UserError, match=says) as err:
        check_sweep_to_resume(["train.py", *argv, f"resume_sweep={folder}"])
    assert "\n" not in str(err.value)


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a sweep directory"):
        check_sweep_to_resume(["train.py", "-m", "seed=1,2", f"resume_sweep={tmp_path}"])


def test_a_job_counts_as_finished_by_its_status_and_its_metrics(tmp_path: Path) -> None:
    assert finished_job(tmp_path) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"val/nelbo": 1.5}))
    write_status(tmp_path, "running")
    assert finished_job(tmp_path) is None
    write_status(tmp_path, "finished")
    assert finished_job(tmp_path) == {"val/nelbo": 1.5}
    (tmp_path / "metrics.json").unlink()
    assert finished_job(tmp_path) is None


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_a_killed_sweep_run_again_keeps_its_finished_job_and_runs_the_rest(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")
    logs = tmp_path / "logs"
    overrides = [
        *TINY_MNIST,
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "extras.print_config=false",
        f"data.data_dir={data}",
        f"paths.log_dir={logs}",
        "trainer.max_epochs=1,40,1",  # job 1 runs long enough to be killed mid-way
    ]
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    sweep = subprocess.Popen(
        [sys.executable, "train.py", "-m", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while not list(logs.glob("train/multiruns/*/1/checkpoints/last.ckpt")):
            assert sweep.poll() is None, "the sweep ended before job 1 saved a checkpoint"
            assert time.monotonic() < deadline, "job 1 saved no checkpoint in 4 minutes"
            time.sleep(0.05)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait(timeout=30)
    (folder,) = (logs / "train" / "multiruns").iterdir()
    assert finished_job(folder / "0") is not None and finished_job(folder / "1") is None
    assert not (folder / "2").exists()
    kept = _snapshot(folder / "0")
    last = folder / "1" / "checkpoints" / "last.ckpt"
    killed_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert killed_step >= 4
    again = run_script("train.py", "-m", *overrides, f"resume_sweep={folder}", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    jobs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2"], "the rerun must use the sweep's folder, not a new one"
    assert list((logs / "train" / "multiruns").iterdir()) == [folder]
    now = _snapshot(folder / "0")
    log_before = kept.pop("train.log")
    assert now.pop("train.log").startswith(log_before)  # its log goes on: a line saying it is kept
    assert {k: v for k, v in now.items() if k in kept} == kept  # nothing else of job 0 rewritten
    assert all(k.startswith(".hydra/resumed_") for k in now.keys() - kept.keys())
    log = again.stdout + again.stderr
    assert f"{folder / '0'} finished in an earlier run of the sweep: kept as it is" in log
    assert "this job of the sweep was interrupted: it goes on from" in log
    for job in ("1", "2"):
        assert finished_job(folder / job) is not None, job
    status = json.loads((folder / "1" / "status.json").read_text())
    assert status["step"] > killed_step  # it went on from where it was killed


def test_a_resumed_sweep_writes_a_started_jobs_config_beside_its_first(
    tmp_path: Path, monkeypatch
) -> None:
    from hydra.core.hydra_config import HydraConfig

    from src.utils.resume import _config_subdir, _sweep_dir

    job = tmp_path / "sweep" / "0"
    runtime = OmegaConf.create({"runtime": {"output_dir": str(job)}})
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: runtime))
    sweep = str(tmp_path / "sweep")
    assert _config_subdir(None, None, "T", sweep) == ".hydra"  # a job that never started
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("seed: 1\n")
    assert _config_subdir(None, None, "T", sweep) == ".hydra/resumed_T"
    assert _config_subdir(None, None, "T", None) == ".hydra"  # not a resumed sweep
    assert _sweep_dir(sweep, "fresh") == str(Path(sweep).resolve())
    assert _sweep_dir(None, "fresh") == "fresh"
