"""Faults and files from strangers: crafted checkpoints write nothing, refused or failed resumes
leave their run byte for byte as it was, signals leave a resumable run and a readable status,
bad values and broken files are one line, failed commands leave no empty folders."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from scripts import summarize
from src.callbacks.divergence_guard import DivergenceError
from src.data.corpora import read_conll, unseen_tags_warning, write_conll
from src.data.idx import read_idx
from src.data.image_datamodule import FILES
from src.data.tagging import ConllDataModule
from src.train import train
from src.utils.checkpoint import read_checkpoint, run_config
from src.utils.checkpoint_io import AtomicCheckpointIO
from src.utils.config import check_groups
from src.utils.errors import UserError, user_message
from src.utils.files import _os_error, write_atomically
from src.utils.resume import check_budget, resume_argv
from src.utils.run_folder import RunFolder
from src.utils.startup import check_composes, check_writable
from src.utils.status import read_status, write_status
from src.utils.trust import check_plain_data, check_targets, trusted_target
from tests.conftest import TINY_MNIST, compose_config, run_script, write_fake_mnist

TINY = [
    *TINY_MNIST,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "extras.print_config=false",
]
GROUPS = ("data", "loss", "model", "trainer", "callbacks", "logger")


class SignalAt(pl.Callback):
    """Send this process `signum` after training step `step` of a run that was not resumed."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            os.kill(os.getpid(), self.signum)


class _Unpicklable:
    """Pickles as a call of os.system: weights-only loading must refuse it, not run it."""

    def __reduce__(self) -> tuple:
        return (os.system, ("true",))


def _checksums(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _one_line_error(result) -> str:
    text = result.stderr.strip()
    assert result.returncode == 2, result.stdout[-1500:] + text[-1500:]
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("faults_data"), n_train=400, n_test=100)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A real, finished train.py run (4 steps), to copy and to craft checkpoints from."""
    logs = tmp_path_factory.mktemp("faults_run")
    result = run_script("train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={logs}")
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (logs / "train" / "runs").iterdir()
    return run


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "logs" / "train" / "runs" / finished_run.name
    shutil.copytree(finished_run, copy)
    return copy


# ---------------------------------------------------------------------------------------------
# checkpoints and configs from strangers

PWNED_NODE = {
    "_target_": "pathlib.Path.write_text",
    "_args_": [{"_target_": "pathlib.Path", "_args_": ["PWNED"]}, "x"],
}


def _craft(ckpt_path: Path, out: Path, where: str, pwned: Path) -> Path:
    ckpt = torch.load(ckpt_path, weights_only=True)
    node = json.loads(json.dumps(PWNED_NODE).replace("PWNED", str(pwned)))
    if where == "model_kwargs":
        ckpt["model_kwargs"] = {"vocab": node}
    else:
        ckpt["run_config"]["model"] = node
    torch.save(ckpt, out)
    return out


SCRIPTS = {
    "eval.py": lambda ckpt, logs: ["eval.py", f"ckpt_path={ckpt}", f"paths.log_dir={logs}"],
    "sample.py": lambda ckpt, logs: ["scripts/sample.py", f"ckpt_path={ckpt}", f"out={logs}/s.png"],
    "tag.py": lambda ckpt, logs: ["scripts/tag.py", f"ckpt_path={ckpt}", "text=abc"],
    "train.py": lambda ckpt, logs: ["train.py", f"ckpt_path={ckpt}", f"paths.log_dir={logs}"],
}


@pytest.mark.parametrize("where", ["model_kwargs", "run_config"])
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_a_crafted_checkpoint_writes_nothing(
    script: str, where: str, run_copy: Path, tmp_path: Path
) -> None:
    """model_kwargs are used always, so that payload sits in a real run folder; run_config only
    when no .hydra/ is beside the checkpoint, so that one sits in a bare folder."""
    pwned, logs = tmp_path / "PWNED", tmp_path / "new_logs"
    folder = run_copy / "checkpoints" if where == "model_kwargs" else tmp_path / "bare"
    folder.mkdir(exist_ok=True)
    crafted = _craft(run_copy / "checkpoints" / "last.ckpt", folder / "crafted.ckpt", where, pwned)
    before = _checksums(run_copy)
    result = run_script(*SCRIPTS[script](crafted, logs))
    text = _one_line_error(result)
    assert where in text and "refused" in text.lower()
    assert not pwned.exists() and not logs.exists() and _checksums(run_copy) == before


def test_a_saved_config_beside_a_checkpoint_is_checked_too(run_copy: Path) -> None:
    config = run_copy / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("src.models.vae.VAE", "builtins.open", 1))
    ckpt_path = run_copy / "checkpoints" / "last.ckpt"
    with pytest.raises(
        UserError, match=r"config\.yaml: model\._target_='builtins\.open' is refused"
    ):
        run_config(ckpt_path, read_checkpoint(ckpt_path))


def test_what_a_stranger_may_build() -> None:
    for name in ("src.models.vae.VAE", "torch.optim.Adam", "torch.optim.lr_scheduler.StepLR"):
        assert trusted_target(name), name
    refused = [
        "pathlib.Path.write_text",
        "builtins.open",
        "os.system",
        "src.utils.run.save_metrics",
    ]
    for name in [*refused, "src.data.corpora.write_conll", "torch.save", 3]:
        assert not trusted_target(name), name
    assert not trusted_target("antigravity.fly") and "antigravity" not in sys.modules
    with pytest.raises(UserError, match=r"model\.loss\._args_\[0\]\._target_='os\.system'"):
        check_targets({"loss": {"_args_": [{"_target_": "os.system"}]}}, "ckpt", "model")
    check_plain_data({"vocab": ["a", "b"], "tags": ["O"], "scheme": None, "n": 1.5}, "c", "kw")
    for bad in ({"_target_": "x"}, {"v": {"_args_": []}}, {"v": object()}, {1: "a"}):
        with pytest.raises(UserError, match="plain data"):
            check_plain_data(bad, "ckpt", "model_kwargs")


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "empty, truncated or corrupt (0 bytes)"),
        (b"PK\x03\x04 not a checkpoint", "empty, truncated or corrupt (21 bytes)"),
        (pickle.dumps(_Unpicklable()), "could run code, so it is refused"),
    ],
)
def test_a_broken_checkpoint_is_one_line_without_torchs_hint(
    content: bytes, phrase: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert phrase in message and "\n" not in message
    assert "weights_only=False" not in message and "likely succeed" not in message


def test_a_truncated_checkpoint_is_refused_before_a_run_folder_is_made(
    finished_run: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "half.ckpt"
    whole = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    result = run_script("train.py", f"ckpt_path={truncated}", f"paths.log_dir={tmp_path}/logs")
    assert "not a readable checkpoint" in _one_line_error(result)
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------------------------------------
# resume


def test_a_checkpoint_of_another_run_is_refused(run_copy: Path, finished_run: Path) -> None:
    before = _checksums(run_copy)
    other = finished_run / "checkpoints" / "last.ckpt"
    result = run_script("train.py", f"resume={run_copy}", f"ckpt_path={other}")
    assert "belongs to" in _one_line_error(result) and _checksums(run_copy) == before


def test_resuming_a_finished_run_says_so_and_changes_nothing(run_copy: Path) -> None:
    before = _checksums(run_copy)
    result = run_script("train.py", f"resume={run_copy}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "finished at step 4: nothing to resume" in result.stdout
    assert _checksums(run_copy) == before


def test_a_resume_that_fails_after_hydra_started_puts_the_run_back(run_copy: Path) -> None:
    """The bad value is seen only by the config check, after Hydra wrote .hydra/resumed_<time>/
    and opened the log: all of it is undone."""
    before = _checksums(run_copy)
    result = run_script("train.py", f"resume={run_copy}", "model.latent.dim=0")
    text = _one_line_error(result)
    assert "model.latent.dim=0 is out of range" in text and "left as it was" in text
    assert _checksums(run_copy) == before


def test_resume_argv_refuses_what_cannot_be_resumed(run_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a run directory"):
        resume_argv(["train.py", f"resume={tmp_path}"])
    with pytest.raises(UserError, match="in a multirun"):
        resume_argv(["train.py", "-m", f"resume={run_copy}"])
    (run_copy / "status.json").unlink()
    (run_copy / "metrics.json").unlink()
    overrides = run_copy / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + "- +callbacks.x._target_=builtins.print\n")
    with pytest.raises(UserError, match=r"callbacks\.x\._target_='builtins\.print'.*again"):
        resume_argv(["train.py", f"resume={run_copy}"])
    again = resume_argv(["train.py", f"resume={run_copy}", "+callbacks.x._target_=builtins.print"])
    assert again[-1] == "+callbacks.x._target_=builtins.print"


# ---------------------------------------------------------------------------------------------
# signals and statuses


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_signal_saves_last_ckpt_and_exits_non_zero(
    signum: int, code: int, data: Path, tmp_path: Path
) -> None:
    result = run_script(
        "train.py",
        *TINY,
        f"data.data_dir={data}",
        f"paths.log_dir={tmp_path}",
        "+callbacks.stop._target_=tests.test_faults.SignalAt",
        "+callbacks.stop.step=3",
        f"+callbacks.stop.signum={signum}",
    )
    (run,) = (tmp_path / "train" / "runs").iterdir()
    name = signal.Signals(signum).name
    assert result.returncode == code, result.stderr[-2000:]
    assert f"interrupted by {name} at step 3: last.ckpt saved at step 3" in result.stderr
    assert f"resume={run}" in result.stderr and "Traceback" not in result.stderr
    status = read_status(run)
    assert (status["status"], status["step"], status["signal"]) == ("interrupted", 3, name)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert not (run / "metrics.json").exists()


def test_a_stopped_sweep_names_the_jobs_that_did_not_run(data: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        "-m",
        *TINY,
        "seed=1,2,3",
        f"data.data_dir={data}",
        f"paths.log_dir={tmp_path}",
        "+callbacks.stop._target_=tests.test_faults.SignalAt",
        "+callbacks.stop.step=2",
        f"+callbacks.stop.signum={int(signal.SIGTERM)}",
    )
    assert result.returncode == 143, result.stderr[-2000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert "stopped at job 0; these jobs did not run: 1: " in result.stderr
    assert "seed=2" in result.stderr and "seed=3" in result.stderr
    assert summarize.main([str(sweep)]) == 0
    rows = (sweep / "summary.csv").read_text().splitlines()[1:]
    assert [(r.split(",")[0], r.split(",")[2]) for r in rows] == [
        ("0", "interrupted"),
        ("1", "not started"),
        ("2", "not started"),
    ]


def test_summarize_refuses_a_metric_no_run_logged(tmp_path: Path, capsys) -> None:
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "metrics.json").write_text('{"val/nelbo": 1.0}')
    assert summarize.main([str(tmp_path), "--metrics", "val/nlebo"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no run logged val/nlebo (did you mean val/nelbo?); the runs have: val/nelbo"
    )


def test_training_that_diverges_stops_with_a_status(data: Path, tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"data.data_dir={data}", "model.optimizer.lr=1e6"], tmp_path)
    with pytest.raises(
        DivergenceError, match=r"diverged at step \d+: the (training loss|gradient)"
    ):
        train(cfg)
    assert read_status(tmp_path)["status"] == "diverged"
    assert not (tmp_path / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# bad values, broken files, one line each


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("model.latent.dim=0", "model.latent.dim=0 is out of range"),
        ("model.iwae_samples=-1", "needs a value >= 0"),
        ("data.batch_size=0", "data.batch_size=0 is out of range"),
        ("model.optimizer.lr=-0.001", "torch.optim.Adam needs a value > 0"),
    ],
)
def test_out_of_range_values_are_refused_before_building(override: str, phrase: str, make_cfg):
    with pytest.raises(UserError, match=phrase):
        check_groups(make_cfg(override), GROUPS)


def test_a_misspelt_top_level_key_in_an_experiment_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntrainr:\n  max_time: 00:00:01:00\n"
    )
    cfg = compose_config(
        [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=mine"], tmp_path / "run"
    )
    with pytest.raises(UserError, match=r"'trainr' is not a top-level key.*did you mean 'trainer'"):
        train(cfg)


def test_composition_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "broken.yaml").write_text("a: 1\n  b: [2\n")
    cases = {
        "model.latent.dimm=3": "model.latent.dimm=3: no such key (model.latent has _target_, dim)",
        "model=nope": "model='nope': no such option. Available options in 'model': capsnet,",
        "seed=[1": "not valid overrides",
    }
    for override, phrase in cases.items():
        with pytest.raises(UserError) as err:
            check_composes(["train.py", override], "train")
        assert phrase in str(err.value) and "\n" not in str(err.value), str(err.value)
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    with pytest.raises(UserError, match=r"broken\.yaml, line 2: YAML syntax error"):
        check_composes(["train.py", searchpath, "experiment=broken"], "train")
    assert check_composes(["train.py", "-m", "seed=1,2", "model.latent.dim=2"], "train").seed == 1


def test_a_log_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match=r"paths\.log_dir=.*a_file/logs cannot be written"):
        check_writable(str(tmp_path / "a_file" / "logs"))
    check_writable(str(tmp_path / "new" / "logs"))
    assert not (tmp_path / "new").exists()


def test_a_byte_corrupted_gz_is_one_line(tmp_path: Path) -> None:
    path = write_fake_mnist(tmp_path) / f"{FILES['test'][1]}.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    raw[len(raw) // 2 + 1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=f"cannot read {path}"):
        read_idx(path)


def test_files_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    conll = tmp_path / "latin1.conll"
    conll.write_bytes("a O\n\nb O\ncafé O\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.conll:4 is not UTF-8 text"):
        read_conll(conll)
    from scripts.tag import lines_of  # tag.py's input, read as it streams

    with pytest.raises(UserError, match=r"latin1\.conll is not UTF-8 text \(line 4: "):
        list(lines_of(conll))


def test_an_empty_split_file_is_refused_before_training(tmp_path: Path) -> None:
    train_file, empty = tmp_path / "train.conll", tmp_path / "val.conll"
    write_conll([(["a", "b"], ["B-PER", "O"])], train_file)
    empty.write_text("\n\n")
    data = ConllDataModule(train_file=str(train_file), val_file=str(empty))
    with pytest.raises(UserError, match=r"data\.val_file=.*val\.conll holds no sentences"):
        data.setup()


def test_a_huge_unseen_tag_is_shortened_in_the_warning() -> None:
    line = unseen_tags_warning(Counter({"Y" * 100_000: 2}), "test.conll")
    assert len(line) < 400 and "(100000 chars)" in line and "(2)" in line


def test_sample_to_a_folder_is_one_line(tmp_path: Path, capsys) -> None:
    from scripts.sample import main as sample_main

    with pytest.raises(SystemExit) as done:
        sample_main(["ckpt_path=none.ckpt", f"out={tmp_path}"])
    assert done.value.code == 2 and "is a folder: give a file name" in capsys.readouterr().err


def test_a_failed_command_leaves_no_run_folder(data: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={tmp_path}", "data.batch_size=0"
    )
    assert "data.batch_size=0 is out of range" in _one_line_error(result)
    assert not list((tmp_path / "train" / "runs").iterdir())


# ---------------------------------------------------------------------------------------------
# atomic writes and what failures leave


def test_a_full_disk_leaves_the_earlier_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("earlier")

    def full(file) -> None:
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    with pytest.raises(OSError) as err:
        write_atomically(target, full)
    assert target.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == [target.name]
    assert user_message(err.value).startswith(f"the disk is full (writing {target})")


def test_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.load(path, weights_only=True)["state_dict"]["w"].tolist() == [1.0, 1.0]

    def full(obj, file) -> None:
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as err:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, path)
    assert err.value.filename == str(path)  # torch says nothing of where it was writing
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_run_folder_after_a_failure(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "train.log").write_text("")
    write_status(fresh, "failed", step=0, error="in setup")  # what RunStatus writes then
    RunFolder(fresh, resumed=False).failed("boom", multirun=False)
    assert not fresh.exists()
    for kept in ("trained", "checkpointed", "in_a_sweep"):
        (tmp_path / kept / ".hydra").mkdir(parents=True)
    trained = RunFolder(tmp_path / "trained", resumed=False)
    write_status(tmp_path / "trained", "diverged", step=1)  # during the task, by RunStatus
    (tmp_path / "checkpointed" / "last.ckpt").write_bytes(b"weights")
    assert "says how it ended" in trained.failed("x", multirun=False)
    assert "marked failed" in RunFolder(tmp_path / "checkpointed", False).failed("x", False)
    assert "marked failed" in RunFolder(tmp_path / "in_a_sweep", False).failed("x", True)
    assert read_status(tmp_path / "trained")["status"] == "diverged"

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / "train.log").write_text("first\n")
    write_status(run, "interrupted", step=3)
    before = _checksums(run)
    folder = RunFolder(run, resumed=True)
    with open(run / "train.log", "a") as log:
        log.write("resumed\n")
    write_status(run, "running", step=3)
    (run / ".hydra" / "resumed_x").mkdir()
    (run / ".hydra" / "resumed_x" / "config.yaml").write_text("a: 1")
    assert "left as it was" in folder.failed("boom", multirun=False)
    assert _checksums(run) == before and not (run / ".hydra" / "resumed_x").exists()

    folder = RunFolder(run, resumed=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"newer weights")
    assert "marked failed" in folder.failed("boom", multirun=False)
    assert read_status(run) | {"time": None} == {"status": "failed", "error": "boom", "time": None}


def test_a_checkpoint_whose_model_arguments_are_not_data_is_named_in_the_refusal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stranger.ckpt"
    torch.save({"state_dict": {}, "model_kwargs": {"vocab": [{"_target_": "os.system"}]}}, path)
    with pytest.raises(UserError) as refused:
        read_checkpoint(path)
    assert str(refused.value).startswith(f"{path}: model_kwargs.vocab[0] holds the key ")


def test_a_refused_target_deep_in_a_config_names_its_file_and_place() -> None:
    node = {"net": {"layers": [{"_target_": "os.system"}]}}
    with pytest.raises(UserError) as refused:
        check_targets(node, "run.yaml", "model")
    assert str(refused.value).startswith("run.yaml: model.net.layers[0]._target_=")


def _checkpoint(completed: int) -> dict:
    return {
        "epoch": 99,
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": completed}}}},
    }


@pytest.mark.parametrize(
    ("completed", "max_epochs", "refused"),
    [
        (15, 2, True),
        (15, 14, True),
        (15, 15, False),
        (15, 16, False),
        (15, None, False),
        (15, -1, False),
        (0, 0, False),
    ],
)
def test_a_resume_with_fewer_epochs_than_completed_is_refused_in_one_line(
    completed: int, max_epochs: int | None, refused: bool
) -> None:
    """Lightning stops such a resume with a traceback; the message names the budget to give."""
    if refused:
        with pytest.raises(
            UserError,
            match=(
                rf"^trainer.max_epochs={max_epochs} is fewer than the {completed} epochs this run "
                rf"has completed: give trainer.max_epochs={completed + 1} or more"
            ),
        ):
            check_budget(_checkpoint(completed), max_epochs)
    else:
        check_budget(_checkpoint(completed), max_epochs)
    with pytest.raises(UserError, match="the 4 epochs"):
        check_budget({"epoch": 4}, 3)  # without loop state: the epoch counter


def test_the_os_error_behind_an_error_is_found_through_causes_and_contexts() -> None:
    """A full disk behind an error raised while handling it (`__context__` only), or behind an
    explicit `raise ... from` (`__cause__`), is found; an error with no OSError behind it is not."""
    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError:
            raise RuntimeError("while saving")  # noqa: B904 (the context is what is tested)
    except RuntimeError as handled:
        assert handled.__cause__ is None and handled.__context__ is full
        assert _os_error(handled) is full
    outer = ValueError("outer")
    outer.__cause__ = RuntimeError("middle")
    outer.__cause__.__context__ = full
    assert _os_error(outer) is full
    assert _os_error(ValueError("no disk involved")) is None
