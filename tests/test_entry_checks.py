"""The entry points' checks of a command line, in process (the fault tests run them as scripts):
each refusal is its own one-line message, and what passes comes back as it should."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.utils.config import check_types
from src.utils.errors import UserError, clipped, user_message
from src.utils.resume import NothingToResume, register_resolvers, resume_argv
from src.utils.script_args import parse_key_values
from src.utils.startup import check_composes, check_writable
from src.utils.status import write_status
from tests.conftest import ROOT

DEFAULTS = {"ckpt_path": "???", "n": 4}


def test_script_arguments_update_the_defaults_and_refuse_the_rest() -> None:
    args = parse_key_values(["n=3", "ckpt_path=a.ckpt"], DEFAULTS, "sample.py")
    assert (args.n, args.ckpt_path) == (3, "a.ckpt")
    usage = "usage: sample.py key=value ... with keys ckpt_path, n; got "
    for argv in (["m=3", "ckpt_path=a.ckpt"], ["ckpt_path"], ["ckpt_path=a.ckpt", "n"]):
        with pytest.raises(UserError) as err:
            parse_key_values(argv, DEFAULTS, "sample.py")
        assert str(err.value) == f"{usage}{argv}"
    with pytest.raises(UserError) as err:
        parse_key_values(["n=5"], DEFAULTS, "sample.py")
    assert str(err.value) == "ckpt_path=<run_dir>/checkpoints/<file>.ckpt is required."
    assert parse_key_values([], {"n": 4}, "tag.py").n == 4


def _run(root: Path, name: str, last: bool = True) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=3\n")
    (run / "checkpoints").mkdir()
    if last:
        torch.save({"state_dict": {}, "global_step": 7}, run / "checkpoints" / "last.ckpt")
    return run


def test_resume_refuses_another_runs_checkpoint_a_run_without_one_and_a_multirun(
    tmp_path: Path,
) -> None:
    mine, other = _run(tmp_path, "mine"), _run(tmp_path, "other")
    theirs = other / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError) as err:
        resume_argv(["train.py", f"resume={mine}", f"ckpt_path={theirs}"])
    assert str(err.value) == (
        f"ckpt_path={theirs} belongs to {other}, not to resume={mine}: a run resumes from its "
        "own checkpoints. Drop resume= to start a new run from it."
    )
    empty = _run(tmp_path, "empty", last=False)
    with pytest.raises(UserError) as err:
        resume_argv(["train.py", f"resume={empty}"])
    assert str(err.value) == (
        f"resume={empty} has no checkpoints/last.ckpt: pass ckpt_path=<one of its checkpoints> "
        "instead."
    )
    with pytest.raises(UserError, match="resume one run at a time, without -m"):
        resume_argv(["train.py", "-m", f"resume={mine}"])
    assert resume_argv(["train.py", "trainer.max_epochs=2"]) == ["train.py", "trainer.max_epochs=2"]


def test_a_finished_run_resumes_only_with_new_settings(tmp_path: Path) -> None:
    run = _run(tmp_path, "done")
    write_status(run, "finished", step=12)
    with pytest.raises(NothingToResume) as err:
        resume_argv(["train.py", f"resume={run}"])
    assert str(err.value).startswith(f"{run} finished at step 12: nothing to resume.")
    longer = resume_argv(["train.py", f"resume={run}", "trainer.max_epochs=9"])
    assert longer == ["train.py", f"resume={run}", "trainer.max_epochs=9"]
    with pytest.raises(NothingToResume):  # the checkpoint named again is no new setting
        resume_argv(["train.py", f"resume={run}", f"ckpt_path={run}/checkpoints/last.ckpt"])


def test_a_value_out_of_range_is_told_its_bounds_each_with_its_own_sign() -> None:
    cases = {
        ("src.data.tagging.ConllDataModule", "val_fraction", 1.5): ">= 0 and < 1",
        ("src.models.ebm.EBM", "reinit_prob", 2.0): ">= 0 and <= 1",
        ("src.data.toy2d.Toy2dDataModule", "n_train", 0): "> 0",
    }
    for (target, key, value), bounds in cases.items():
        with pytest.raises(UserError) as err:
            check_types(OmegaConf.create({"_target_": target, key: value}))
        assert str(err.value) == (
            f"{key}={value} is out of range: {target} needs a value {bounds} there. Fix the "
            f"override: {key}=<a value {bounds}>."
        )


def test_what_the_user_can_fix_is_found_anywhere_in_the_chain_of_causes() -> None:
    def chained(inner: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as cause:
                raise outer from cause
        except BaseException as err:
            return err

    full = OSError(errno.ENOSPC, "No space left on device", "/logs/run/last.ckpt")
    assert user_message(chained(full, RuntimeError("save failed"))) == (
        "the disk is full (writing /logs/run/last.ckpt): free some space or point paths.log_dir "
        "at another disk; nothing was left half-written."
    )
    denied = OSError(errno.EACCES, "Permission denied")
    assert user_message(chained(denied, RuntimeError("x"))) == (
        "cannot write a file (Permission denied): pick a folder you can write, e.g. "
        "paths.log_dir=/tmp/logs."
    )
    assert user_message(chained(UserError("fix it"), ValueError("wrapped"))) == "fix it"
    assert user_message(OSError(errno.ENOENT, "No such file")) is None
    assert user_message(chained(ValueError("a bug"), RuntimeError("b"))) is None
    loop = RuntimeError("loop")
    loop.__context__ = loop
    assert user_message(loop) is None


def test_a_long_text_is_clipped_to_its_limit_with_its_length() -> None:
    assert clipped("x" * 60) == "x" * 60
    assert clipped("x" * 61) == "x" * 48 + "... (61 chars)"
    assert clipped("abcdefghijklmnopqrstuvwxyz", limit=20) == "abcdefgh... (26 chars)"


@pytest.fixture
def composes():
    register_resolvers()

    def compose_or_message(*overrides: str) -> str:
        try:
            check_composes(["train.py", *overrides], "train")
        except UserError as err:
            return str(err)
        return "composed"

    return compose_or_message


def test_a_command_line_that_does_not_compose_is_one_line_naming_the_fix(composes) -> None:
    assert composes("model=[") == (
        "'model=[': not valid overrides (no viable alternative at input '['); write key=value, "
        "group=option or +key=value."
    )
    models = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    assert composes("model=nope") == (
        f"model='nope': no such option. Available options in 'model': {', '.join(models)}."
    )
    for override in ("model/encoder=nope", "model/encoder@model.encoder=nope"):
        assert composes("model=crf_tagger", override) == (
            f"{override.split('=')[0]}='nope': no such option. Available options in "
            "'model/encoder': bilstm, char_cnn."
        )
    data_keys = "_target_, name, data_dir, batch_size, eval_batch_size, val_size, split_seed"
    assert composes("data.nme=x").startswith(f"data.nme=x: no such key (data has {data_keys}, ")
    assert composes("data.nme=x").endswith(
        "). Fix the spelling, or add a new key with +data.nme=x."
    )
    assert composes("nosuchkey=1") == (
        "nosuchkey=1: no such key (the config has no such key). Fix the spelling, or add a new "
        "key with +nosuchkey=1."
    )
    assert composes("model=crf_tagger", "model/encoder=bilstm", "seed=3") == "composed"


def test_a_sweep_is_checked_at_its_first_values() -> None:
    register_resolvers()
    cfg = check_composes(["train.py", "-m", "seed=3,4", "trainer.max_epochs=range(2,5)"], "train")
    assert (cfg.seed, cfg.trainer.max_epochs) == (3, 2)
    assert check_composes(["train.py", "--cfg", "job"], "train") is None


def test_a_log_folder_that_is_a_file_or_unwritable_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(UserError) as err:
        check_writable(str(file))
    assert str(err.value) == (
        f"paths.log_dir={file} cannot be written ({file} is not a folder): pick a folder you can "
        "write, e.g. paths.log_dir=/tmp/logs."
    )
    check_writable(str(tmp_path / "new" / "deeper"))  # its nearest existing parent is written
    assert list(tmp_path.iterdir()) == [file]  # and the check leaves nothing behind
