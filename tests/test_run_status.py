"""The RunStatus callback in process: what status.json says for each way a fit ends, and the
SIGUSR1 handler it installs for the fit (a scheduler's warning before the time limit)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.callbacks.divergence_guard import DivergenceError
from src.callbacks.run_status import RunStatus
from src.utils.errors import UserError
from src.utils.status import read_status


def _trainer(step: int = 7) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=True, global_step=step, received_sigterm=False)


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (DivergenceError("loss is nan at step 7"), {"status": "diverged",
                                                    "error": "loss is nan at step 7"}),
        (RuntimeError("boom\nmore lines"), {"status": "failed", "error": "RuntimeError: boom"}),
        (UserError("data.x=1 is wrong; use 2."), {"status": "failed",
                                                   "error": "data.x=1 is wrong; use 2."}),
    ],
)  # fmt: skip
def test_the_status_says_how_the_fit_ended(
    tmp_path: Path, exception: BaseException, expected: dict
) -> None:
    RunStatus(tmp_path).on_exception(_trainer(), None, exception)
    status = read_status(tmp_path)
    assert {k: status[k] for k in ("status", "error")} == expected and status["step"] == 7


def test_an_interrupted_fit_names_the_signal_and_the_saved_checkpoint(tmp_path: Path) -> None:
    callback = RunStatus(tmp_path)
    callback.signal = signal.SIGUSR1
    callback.saved = {"checkpoint": "c/last.ckpt", "checkpoint_step": 7}
    callback.on_exception(_trainer(), None, SIGTERMException())
    status = read_status(tmp_path)
    keys = ("status", "signal", "checkpoint", "checkpoint_step", "step")
    assert {k: status[k] for k in keys} == {
        "status": "interrupted", "signal": "SIGUSR1", "checkpoint": "c/last.ckpt",
        "checkpoint_step": 7, "step": 7,
    }  # fmt: skip
    (tmp_path / "b").mkdir()
    RunStatus(tmp_path / "b").on_exception(_trainer(), None, SIGTERMException())
    assert read_status(tmp_path / "b")["signal"] == "SIGTERM"  # Lightning's own: SIGTERM


def test_only_rank_zero_writes_the_status(tmp_path: Path) -> None:
    other = SimpleNamespace(is_global_zero=False, global_step=3, received_sigterm=False)
    RunStatus(tmp_path).on_exception(other, None, RuntimeError("x"))
    assert not (tmp_path / "status.json").exists()


def test_sigusr1_during_the_fit_is_caught_and_saves_at_the_step_end(tmp_path: Path) -> None:
    callback, trainer = RunStatus(tmp_path), _trainer()
    saved = []
    trainer.save_checkpoint = saved.append
    before = signal.getsignal(signal.SIGUSR1)
    callback.on_fit_start(trainer, None)
    try:
        assert read_status(tmp_path)["status"] == "running"
        os.kill(os.getpid(), signal.SIGUSR1)
        assert callback.signal == signal.SIGUSR1
        with pytest.raises(SIGTERMException):
            callback.on_train_batch_end(trainer, None, None, None, 0)
        assert saved == [callback.last_path]
        assert callback.saved == {"checkpoint": str(callback.last_path), "checkpoint_step": 7}
    finally:
        callback.teardown(trainer, None, "fit")
    callback.teardown(trainer, None, "fit")  # put back once; a second teardown leaves it
    assert signal.getsignal(signal.SIGUSR1) == before


class Requeuer:
    """A scheduler tool's handler of its warning signal, as submitit's (requeue, then exit) or
    Lightning's SLURM environment's (requeue, return) behave; it records what it found."""

    def __init__(self, callback: RunStatus, exits: bool) -> None:
        self.callback, self.exits, self.calls = callback, exits, []

    def __call__(self, signum: int, frame: object) -> None:
        self.calls.append((signum, read_status(self.callback.run_dir), self.callback.saved))
        if self.exits:
            raise SystemExit(-1)


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGUSR1])
def test_a_warning_a_scheduler_tool_handles_is_passed_on_after_last_ckpt_is_saved(
    tmp_path: Path, signum: int
) -> None:
    callback, trainer = RunStatus(tmp_path), _trainer()
    trainer.save_checkpoint = lambda path: None
    exits = signum == signal.SIGUSR2  # submitit's SIGUSR2 exits; Lightning's SIGUSR1 returns
    tool = Requeuer(callback, exits)
    before = signal.signal(signum, tool)
    try:
        callback.on_fit_start(trainer, None)
        os.kill(os.getpid(), signum)
        assert callback.signal == signum and tool.calls == []  # not at once: at the step's end
        with pytest.raises(SystemExit if exits else SIGTERMException) as stop:
            callback.on_train_batch_end(trainer, None, None, None, 0)
        ((passed, status, saved),) = tool.calls
        assert passed == signum and saved["checkpoint_step"] == 7
        assert status["status"] == "interrupted" and status["signal"] == signal.Signals(signum).name
        callback.on_exception(trainer, None, stop.value)
        assert read_status(tmp_path)["status"] == "interrupted"
        callback.teardown(trainer, None, "fit")
        assert signal.getsignal(signum) is tool
    finally:
        signal.signal(signum, before)


def test_sigusr2_is_left_alone_where_no_tool_handles_it(tmp_path: Path) -> None:
    callback, trainer = RunStatus(tmp_path), _trainer()
    before = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        callback.on_fit_start(trainer, None)
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
        callback.teardown(trainer, None, "fit")
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_a_system_exit_before_any_save_is_a_failure(tmp_path: Path) -> None:
    RunStatus(tmp_path).on_exception(_trainer(), None, SystemExit(-1))
    assert read_status(tmp_path)["status"] == "failed"
