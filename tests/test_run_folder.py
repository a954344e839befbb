"""What a failed command leaves in its run directory (src/utils/run_folder.py), in process: a
resumed run put back byte for byte, a new run that did nothing removed, the rest marked failed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from src.utils.run_folder import RunFolder
from src.utils.status import read_status, write_status


def _run(path: Path) -> dict[str, bytes]:
    """A finished-looking run: config, log, checkpoint, status and metrics; its files' bytes."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (path / "train.log").write_text("epoch 1\nepoch 2\n")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "last.ckpt").write_bytes(b"weights" * 100)
    write_status(path, "finished", step=20)
    (path / "metrics.json").write_text(json.dumps({"val/loss": 1.5}))
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


def _files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


def test_a_failed_resume_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    run = tmp_path / "run"
    before = _run(run)
    (run / ".hydra" / "resumed_1").mkdir()
    (run / ".hydra" / "resumed_1" / "config.yaml").write_text("seed: 1\n")  # start-up's own
    folder = RunFolder(run, resumed=True, started=".hydra/resumed_1")
    with open(run / "train.log", "a") as log:
        log.write("resuming...\n")
    write_status(run, "running")
    (run / "metrics.json").write_text(json.dumps({"val/loss": 9.5}))  # same size, new bytes
    (run / "tensorboard" / "v0" / "deep").mkdir(parents=True)
    (run / "tensorboard" / "v0" / "deep" / "events").write_bytes(b"e")
    (run / "tensorboard" / "v0" / "header").write_bytes(b"h")
    assert folder.failed("boom", multirun=False) == f"{run} is left as it was"
    assert _files(run) == before
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".hydra", "train.log", "checkpoints", "status.json", "metrics.json"]
    )
    assert not (run / ".hydra" / "resumed_1").exists()


def test_a_resume_that_rewrote_a_checkpoint_is_marked_failed_not_rolled_back(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _run(run)
    folder = RunFolder(run, resumed=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"new weights")
    write_status(run, "running")
    assert folder.failed("boom", multirun=False) == f"{run} is marked failed (status.json)"
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"new weights"
    status = read_status(run)
    assert (status["status"], status["error"]) == ("failed", "boom")


def test_a_shortened_log_cannot_be_put_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run(run)
    folder = RunFolder(run, resumed=True)
    (run / "train.log").write_text("x")
    os.utime(run / "train.log", ns=(1, 1))
    assert folder.failed("boom", multirun=False).endswith("is marked failed (status.json)")


def test_a_new_run_that_did_nothing_is_removed_and_one_that_trained_is_kept(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    (empty / ".hydra").mkdir(parents=True)
    (empty / "train.log").write_text("starting\n")
    write_status(empty, "running")
    assert RunFolder(empty, resumed=False).failed("boom", multirun=False) == ""
    assert not empty.exists()

    in_sweep = tmp_path / "sweep" / "0"
    (in_sweep / ".hydra").mkdir(parents=True)
    result = RunFolder(in_sweep, resumed=False).failed("boom", multirun=True)
    assert result == f"{in_sweep} is marked failed (status.json)"  # a sweep keeps its jobs

    trained = tmp_path / "trained"
    (trained / ".hydra").mkdir(parents=True)
    folder = RunFolder(trained, resumed=False)
    write_status(trained, "running", step=3)
    assert folder.failed("boom", multirun=False) == f"{trained} is marked failed (status.json)"
    saved = tmp_path / "saved"
    (saved / "checkpoints").mkdir(parents=True)
    folder = RunFolder(saved, resumed=False)
    (saved / "checkpoints" / "last.ckpt").write_bytes(b"w")
    assert folder.failed("boom", multirun=False) == f"{saved} is marked failed (status.json)"
    assert RunFolder(tmp_path / "gone", resumed=False).failed("boom", multirun=False) == ""


def test_a_run_that_wrote_how_it_ended_keeps_its_own_status(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    write_status(run, "running", step=1)
    folder = RunFolder(run, resumed=False)
    write_status(run, "diverged", step=9)
    result = folder.failed("boom", multirun=False)
    assert result == f"{run} says how it ended in status.json"
    assert read_status(run)["status"] == "diverged"


def test_a_failed_resume_leaves_the_files_it_did_not_touch_untouched(tmp_path: Path) -> None:
    """Put back means the changed files only: the others keep their bytes and their times."""
    run = tmp_path / "run"
    _run(run)
    untouched = [run / ".hydra" / "config.yaml", run / "checkpoints" / "last.ckpt"]
    old = 1_000_000_000_000_000_000
    for file in untouched:
        os.utime(file, ns=(old, old))
    folder = RunFolder(run, resumed=True)
    (run / "metrics.json").write_text(json.dumps({"val/loss": 9.5}))
    assert folder.failed("boom", multirun=False) == f"{run} is left as it was"
    assert [f.stat().st_mtime_ns for f in untouched] == [old, old]
