"""The SLURM launcher on a real one-node cluster (`scripts/slurm_local.sh`, started once for this
module, stopped by PID at its end): a sweep of real tiny trainings, a job that fails while the
other finishes, and a DDP job of two SLURM tasks whose weights equal one process's.

Where the cluster cannot start (no root, no apt, a daemon that does not come up) the tests fail
with the script's reason: a broken set-up must not pass for green."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tests.conftest import ROOT, run_script, write_fake_mnist
from tests.test_ddp import RUN as ONE_PROCESS
from tests.test_resume import RUN as RESUMABLE_RUN
from tests.test_sweeps import TINY as SWEEP

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
TINY = [
    *SWEEP,
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=10",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """SLURM_CONF of a started cluster, as the environment of the commands that use it."""
    folder = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=900
    )
    try:
        if start.returncode != 0:
            pytest.fail(f"the local SLURM cluster did not start: {start.stderr.strip()}")
        yield {"SLURM_CONF": str(folder / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=120, check=False)
    pids = [folder / "run" / f"{d}.pid" for d in ("munged", "slurmctld", "slurmd")]
    assert not any(p.exists() for p in pids)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("slurm_data"), n_train=300, n_test=100)


def _sweep(cluster: dict[str, str], log_dir: Path, *overrides: str) -> tuple[int, Path, str]:
    result = run_script(
        "train.py", "-m", *TINY, f"paths.log_dir={log_dir}", *overrides, env=cluster, timeout=600
    )
    (sweep,) = (log_dir / "debug" / "multiruns").iterdir()
    return result.returncode, sweep, result.stderr + result.stdout


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_a_sweep_of_two_jobs_trains_on_the_cluster(
    cluster: dict[str, str], data: Path, tmp_path: Path
) -> None:
    code, sweep, log = _sweep(cluster, tmp_path, f"data.data_dir={data}", "seed=1,2")
    assert code == 0, log[-3000:]
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    losses = [json.loads((j / "metrics.json").read_text())["val/nelbo"] for j in jobs]
    assert all(math.isfinite(v) for v in losses) and losses[0] != losses[1]  # two seeds
    results = list((sweep / ".submitit").glob("*_*/*_result.pkl"))
    assert len(results) == 2  # one task of SLURM's array job each, with submitit's logs
    assert log.count("sacct") <= 1  # accounting is off here: one line says so, not one a poll
    assert run_script("scripts/summarize.py", str(sweep)).returncode == 0
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")]
    for row, value in zip(rows, losses, strict=True):
        assert float(row["val/nelbo"]) == pytest.approx(value, rel=1e-5)


def test_a_failing_job_does_not_stop_the_others(
    cluster: dict[str, str], data: Path, tmp_path: Path
) -> None:
    code, sweep, _ = _sweep(cluster, tmp_path, f"data.data_dir={data}", "data.val_size=0,100")
    assert code != 0  # the sweep says one job failed
    failed, done = _jobs(sweep)
    assert "data.val_size=0 must be between" in (failed / "error.txt").read_text()
    assert math.isfinite(json.loads((done / "metrics.json").read_text())["val/nelbo"])
    assert run_script("scripts/summarize.py", str(sweep)).returncode == 0
    with open(sweep / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["failed", "ok"]


DDP = [*ONE_PROCESS, "trainer=ddp_sim"]


def test_a_ddp_job_of_two_slurm_tasks_trains_as_one_process(
    cluster: dict[str, str], data: Path, tmp_path: Path
) -> None:
    """Two tasks started by srun, their ranks from SLURM's environment, each with half the batch:
    the weights of one process with the whole batch (as tests/test_ddp.py checks for ddp_sim)."""
    ckpt = "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint"
    one = run_script(
        "train.py",
        *DDP,
        f"data.data_dir={data}",
        "trainer.devices=1",
        "data.batch_size=50",
        ckpt,
        f"+callbacks.ckpt.dirpath={tmp_path}/one_ckpt",
        f"paths.log_dir={tmp_path}/one",
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_script(
        "train.py",
        "-m",
        *DDP,
        f"data.data_dir={data}",
        "data.batch_size=25",
        ckpt,
        f"+callbacks.ckpt.dirpath={tmp_path}/two_ckpt",
        f"paths.log_dir={tmp_path}/two",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=10",
        env=cluster,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    (sweep,) = (tmp_path / "two" / "train" / "multiruns").iterdir()
    (job,) = _jobs(sweep)
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # one log per SLURM task: two tasks of one job
    logged = [line for p in (sweep / ".submitit").glob("*/*_log.*") for line in p.open()]
    ranks = sorted(
        line.split("GLOBAL_RANK: ")[1].strip() for line in logged if "GLOBAL_RANK" in line
    )
    assert ranks == ["0, MEMBER: 1/2", "1, MEMBER: 2/2"]  # each task took its rank from SLURM
    weights = [
        torch.load(next((tmp_path / f"{k}_ckpt").glob("*.ckpt")), weights_only=True)
        for k in ("one", "two")
    ]
    assert weights[0]["global_step"] == weights[1]["global_step"] == 8  # 2 epochs of 200 / 50
    for name, value in weights[0]["state_dict"].items():
        torch.testing.assert_close(weights[1]["state_dict"][name], value, rtol=0, atol=1e-5)
    assert json.loads((job / "metrics.json").read_text())["val/loss"] == pytest.approx(
        json.loads(
            next((tmp_path / "one" / "train" / "runs").iterdir())
            .joinpath("metrics.json")
            .read_text()
        )["val/loss"],
        abs=1e-4,
    )
    assert os.environ.get("SLURM_JOB_ID") is None  # the test itself ran outside SLURM


class WaitForRequeue(pl.Callback):
    """In a SLURM job's first attempt: after training step `step`, write `flag` and wait for the
    SIGTERM of `scontrol requeue` (at most `wait_s`)."""

    wait_s = 120

    def __init__(self, step: int, flag: str) -> None:
        self.step, self.flag = step, Path(flag)

    def stopped(self, trainer: pl.Trainer) -> bool:
        return trainer.received_sigterm

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        first = os.environ.get("SLURM_JOB_ID") and not os.environ.get("SLURM_RESTART_COUNT")
        if not first or trainer.global_step != self.step:
            return
        self.flag.write_text(os.environ["SLURM_JOB_ID"])
        deadline = time.monotonic() + self.wait_s
        while not self.stopped(trainer) and time.monotonic() < deadline:
            time.sleep(0.1)


class WaitForTimeLimit(WaitForRequeue):
    """The same, waiting for the time limit's warning instead (submitit's SIGUSR2, which the run's
    RunStatus records), and writing its name beside `flag` when it came."""

    wait_s = 240

    def stopped(self, trainer: pl.Trainer) -> bool:
        (status,) = (c for c in trainer.callbacks if type(c).__name__ == "RunStatus")
        if status.signal is None:
            return False
        self.flag.with_suffix(".signal").write_text(signal.Signals(status.signal).name)
        return True


def _requeued_job(
    cluster: dict[str, str], tmp_path: Path, waiter: str, *launcher: str, requeue: bool
) -> tuple[Path, Path]:
    """A run trained whole, and the same run as a SLURM job stopped after step 15 (by
    `scontrol requeue` when `requeue`, else by the time limit's warning) and started again: the
    two run directories."""
    data = write_fake_mnist(tmp_path / "data")
    whole = run_script(
        "train.py", *RESUMABLE_RUN, f"data.data_dir={data}", f"paths.log_dir={tmp_path}/whole"
    )
    assert whole.returncode == 0, whole.stderr[-3000:]
    flag = tmp_path / "at_step"
    waiter_overrides = [
        f"+callbacks.wait._target_=tests.test_slurm.{waiter}",
        "+callbacks.wait.step=15",
        f"+callbacks.wait.flag={flag}",
    ]
    sweep_cmd = [
        sys.executable, "train.py", "-m", *RESUMABLE_RUN, f"data.data_dir={data}",
        *waiter_overrides, f"paths.log_dir={tmp_path}/requeued", "hydra/launcher=slurm",
        "hydra.launcher.partition=debug", *launcher,
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), **cluster}
    sweep = subprocess.Popen(sweep_cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not flag.exists() and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.2)
        assert flag.exists(), "the job never reached step 15"
        if requeue:
            command = ["scontrol", "requeue", flag.read_text()]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        log, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, log[-3000:]
    (multirun,) = (tmp_path / "requeued" / "train" / "multiruns").iterdir()
    (job,) = _jobs(multirun)
    (reference,) = (tmp_path / "whole" / "train" / "runs").iterdir()
    return job, reference


def _assert_it_ended_as_the_whole_run(job: Path, reference: Path) -> None:
    assert "SLURM requeued this job: it goes on from" in (job / "train.log").read_text()
    assert json.loads((job / "status.json").read_text())["status"] == "finished"
    ends = [
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (reference, job)
    ]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 30
    for name, value in ends[0]["state_dict"].items():
        torch.testing.assert_close(ends[1]["state_dict"][name], value, rtol=0, atol=0, msg=name)
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (reference, job)]
    assert metrics[1] == pytest.approx(metrics[0], rel=1e-6)


def test_a_requeued_job_goes_on_in_its_run_directory_to_the_uninterrupted_end(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    """`scontrol requeue` mid-epoch (step 15 of 30): SLURM stops the job with SIGTERM, the run
    saves last.ckpt at that step, SLURM starts the job again, and the run goes on from it in the
    same directory, to the weights and metrics of a run that was never stopped."""
    job, reference = _requeued_job(
        cluster, tmp_path, "WaitForRequeue", "hydra.launcher.timeout_min=10", requeue=True
    )
    _assert_it_ended_as_the_whole_run(job, reference)


def test_a_job_warned_of_its_time_limit_requeues_itself_and_ends_as_the_whole_run(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    """A 3-minute time limit whose warning (submitit's SIGUSR2, 100 s before) reaches the job
    while it waits after step 15: the run saves last.ckpt at that step and hands the signal to
    submitit, which requeues the job; the next attempt goes on from the saved step to the whole
    run's weights and metrics. Nobody calls scontrol here."""
    job, reference = _requeued_job(
        cluster, tmp_path, "WaitForTimeLimit", "hydra.launcher.timeout_min=3",
        "hydra.launcher.signal_delay_s=100", requeue=False,
    )  # fmt: skip
    _assert_it_ended_as_the_whole_run(job, reference)
    assert (tmp_path / "at_step.signal").read_text() == "SIGUSR2"  # seen after step 15
    logs = "".join(p.read_text() for p in job.parent.glob(".submitit/*/*_log.err"))
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs, logs[-2000:]
