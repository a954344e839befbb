"""What `train.py` and `eval.py` do around their task (`src.utils.run.run_entry`), in process: how
a run ends on the command line (the run directory, the one-line error and its exit code, a
signal's message and code, a sweep's failed job) and the sweep's jobs a signal left unrun. The
end-to-end tests run the same code in subprocesses, where mutation testing cannot see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from src.utils.errors import UserError
from src.utils.resume import register_resolvers, resume_argv
from src.utils.run import print_config_tree, report_run_dir, run_entry
from src.utils.startup import (
    check_checkpoint_to_evaluate,
    check_writable,
    composition_error,
    prepare,
)
from src.utils.status import read_status, write_status
from src.utils.sweep import not_run_message, planned_jobs
from tests.conftest import ROOT


def _hydra(
    out: Path, *overrides: str, multirun: bool = False, job: int = 0, subdir: str = ".hydra"
) -> DictConfig:
    """The config, and HydraConfig as `@hydra.main` sets it, for a run in `out`."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        cfg.hydra.job.num = job
        cfg.hydra.output_subdir = subdir
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "run"
    out.mkdir()
    yield out
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def test_a_finished_run_names_its_directory_and_tensorboard_command(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir, "logger=tensorboard", "seed=41")
    assert run_entry(lambda c: {"seed": c.seed}, cfg) == {"seed": 41}  # the task gets the config
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"run directory: {run_dir}",
        f"open it in TensorBoard: tensorboard --logdir {run_dir}",
    ]
    cfg = _hydra(run_dir, "logger=csv")
    run_entry(lambda c: None, cfg)
    assert capsys.readouterr().out.splitlines()[-1] == f"run directory: {run_dir}"


def test_a_user_error_is_one_line_and_exit_code_2(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")  # a run that did something

    def task(_: DictConfig) -> None:
        raise UserError("model.latent.dim=0 must be at least 1.")

    with pytest.raises(SystemExit) as stopped:
        run_entry(task, cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"error: model.latent.dim=0 must be at least 1. ({run_dir} is marked failed "
        "(status.json))\n"
    )
    assert read_status(run_dir)["status"] == "failed"


def test_a_new_run_that_failed_before_doing_anything_leaves_no_folder(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir)
    with pytest.raises(SystemExit):
        run_entry(lambda c: (_ for _ in ()).throw(UserError("no such file")), cfg)
    assert capsys.readouterr().err == "error: no such file\n"
    assert not run_dir.exists()


def test_a_bug_is_not_dressed_as_a_user_error(run_dir: Path) -> None:
    cfg = _hydra(run_dir)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")  # a run that did something
    with pytest.raises(ZeroDivisionError):
        run_entry(lambda c: 1 / 0, cfg)
    assert read_status(run_dir)["error"] == "ZeroDivisionError: division by zero"


def test_a_failed_resume_leaves_the_run_as_it_was_and_says_so(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir, subdir=".hydra/resumed_2026")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    write_status(run_dir, "interrupted", step=3)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        run_entry(lambda c: (_ for _ in ()).throw(UserError("bad resume")), cfg)
    assert capsys.readouterr().err == f"error: bad resume ({run_dir} is left as it was)\n"
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_outside_hydra_a_user_error_is_its_line_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    HydraConfig.instance().cfg = None
    with pytest.raises(SystemExit) as stopped:
        run_entry(lambda c: (_ for _ in ()).throw(UserError("no data")), OmegaConf.create({}))
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: no data\n"
    report_run_dir(OmegaConf.create({"logger": {"tb": {"_target_": "TensorBoardLogger"}}}))
    assert capsys.readouterr().out == ""  # no run directory to name


def test_a_failed_job_of_a_sweep_writes_its_traceback_and_goes_back_to_hydra(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir, multirun=True)
    with pytest.raises(UserError):
        run_entry(lambda c: (_ for _ in ()).throw(UserError("bad seed")), cfg)
    error = (run_dir / "error.txt").read_text().splitlines()
    assert error[0] == "Traceback (most recent call last):" and error[-1].endswith(
        "UserError: bad seed"
    )
    assert all(line.startswith("  ") for line in error[1:-1])  # the frames, as Python prints them
    assert run_dir.is_dir() and read_status(run_dir)["status"] == "failed"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGUSR1", 138)])
def test_a_signal_says_where_the_run_stopped_and_how_to_go_on(
    run_dir: Path, capsys: pytest.CaptureFixture[str], name: str, code: int
) -> None:
    cfg = _hydra(run_dir)

    def task(_: DictConfig) -> None:
        write_status(run_dir, "interrupted", signal=name, step=7, checkpoint_step=6)
        raise SIGTERMException

    with pytest.raises(SystemExit) as stopped:
        run_entry(task, cfg)
    assert stopped.value.code == code
    assert capsys.readouterr().err == (
        f"interrupted by {name} at step 7: last.ckpt saved at step 6; continue with "
        f"python train.py resume={run_dir}\n"
    )


def test_a_signal_without_a_saved_checkpoint_points_at_the_periodic_one(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _hydra(run_dir)

    def task(_: DictConfig) -> None:
        write_status(run_dir, "interrupted", step=2)
        raise SIGTERMException

    with pytest.raises(SystemExit) as stopped:
        run_entry(task, cfg)
    assert stopped.value.code == 143  # SIGTERM when the status names none
    err = capsys.readouterr().err
    assert err.startswith("interrupted by SIGTERM at step 2: last.ckpt is the latest periodic one;")


def test_a_signal_name_python_does_not_know_exits_as_sigterm(run_dir: Path) -> None:
    cfg = _hydra(run_dir)

    def task(_: DictConfig) -> None:
        write_status(run_dir, "interrupted", signal="SIGFOO", step=1)
        raise SIGTERMException

    with pytest.raises(SystemExit) as stopped:
        run_entry(task, cfg)
    assert stopped.value.code == 143


def _basic_sweep(sweep_dir: Path) -> None:
    """The multirun.yaml of `python train.py -m seed=1,2 model.latent.dim=2,16`."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    node = {
        "hydra": {
            "sweeper": {
                "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                "params": None,
            },
            "overrides": {"task": ["seed=1,2", "model.latent.dim=2,16"]},
        }
    }
    OmegaConf.save(OmegaConf.create(node), sweep_dir / "multirun.yaml")


def test_a_signal_in_a_sweep_names_the_jobs_that_did_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    _basic_sweep(sweep)
    out = sweep / "1"
    out.mkdir()
    cfg = _hydra(out, multirun=True, job=1)

    def task(_: DictConfig) -> None:
        write_status(out, "interrupted", signal="SIGTERM", step=1)
        raise SIGTERMException

    try:
        with pytest.raises(SystemExit):
            run_entry(task, cfg)
    finally:
        HydraConfig.instance().cfg = None
    err = capsys.readouterr().err.splitlines()
    assert err[1] == (
        f"the sweep in {sweep} stopped at job 1; these jobs did not run: "
        "2: seed=2 model.latent.dim=2; 3: seed=2 model.latent.dim=16"
    )


def test_the_planned_jobs_of_a_basic_sweep_and_of_none(tmp_path: Path) -> None:
    _basic_sweep(tmp_path / "basic")
    assert planned_jobs(tmp_path / "basic") == [
        ["seed=1", "model.latent.dim=2"],
        ["seed=1", "model.latent.dim=16"],
        ["seed=2", "model.latent.dim=2"],
        ["seed=2", "model.latent.dim=16"],
    ]
    assert not_run_message(tmp_path / "basic", 3) == (
        f"the sweep in {tmp_path / 'basic'} stopped at its last job (3)."
    )
    assert planned_jobs(tmp_path / "none") is None
    assert not_run_message(tmp_path / "none", 0) == (
        f"the sweep in {tmp_path / 'none'} stopped at job 0; later jobs did not run."
    )
    other = tmp_path / "optuna"
    other.mkdir()
    optuna = {"hydra": {"sweeper": {"_target_": "hydra_plugins.optuna.OptunaSweeper"}}}
    OmegaConf.save(OmegaConf.create(optuna), other / "multirun.yaml")
    assert planned_jobs(other) is None


def test_the_config_tree_is_printed_and_appended_to_the_runs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = OmegaConf.create({"seed": 3, "model": {"lr": 0.5}})
    saved = tmp_path / "config_tree.log"
    print_config_tree(cfg, saved)
    print_config_tree(cfg, saved)  # a resumed run adds its tree
    shown = capsys.readouterr().out.splitlines()
    shown = [line.rstrip() for line in shown]
    assert shown[0] == "CONFIG" and shown[1].endswith("seed") and shown[2].endswith("└── 3")
    assert shown[4].endswith("└── lr: 0.5")
    text = saved.read_text()
    assert text.count("CONFIG") == 2 and text.count("lr: 0.5") == 2


def test_prepare_hands_a_good_command_line_to_hydra_unchanged(tmp_path: Path) -> None:
    argv = ["train.py", "seed=3", f"paths.log_dir={tmp_path / 'logs'}"]
    assert prepare(list(argv), "train") == argv
    assert not (tmp_path / "logs").exists()  # checked, not made


@pytest.mark.parametrize(
    ("argv", "config_name", "said"),
    [
        (["train.py", "model=nope"], "train", "error: model='nope': no such option. Available"),
        (
            ["eval.py", "ckpt_path=/nowhere/x.ckpt"],
            "eval",
            "error: ckpt_path=/nowhere/x.ckpt does not exist: point it at a .ckpt file of a run.",
        ),
    ],
)
def test_prepare_refuses_in_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], config_name: str, said: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        prepare(argv, config_name)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(said) and err.count("\n") == 1


def test_prepare_refuses_a_log_folder_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(SystemExit) as stopped:
        prepare(["train.py", f"paths.log_dir={file}"], "train")
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: paths.log_dir={file} cannot be written")


def test_prepare_says_a_finished_run_has_nothing_to_resume_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "done"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {}, "global_step": 4}, run / "checkpoints" / "last.ckpt")
    write_status(run, "finished", step=4)
    with pytest.raises(SystemExit) as stopped:
        prepare(["train.py", f"resume={run}"], "train")
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(f"{run} finished at step 4: nothing to resume.")


def _checkpoint_of_my_model(root: Path, in_run: bool) -> Path:
    """A checkpoint whose run config builds `mymodels.Net`, in a run directory or carrying it."""
    config = {"model": {"_target_": "mymodels.Net"}, "seed": 1}
    ckpt = root / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    if in_run:
        (root / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create(config), root / ".hydra" / "config.yaml")
        torch.save({"state_dict": {}}, ckpt)
    else:
        torch.save({"state_dict": {}, "run_config": config}, ckpt)
    return ckpt


@pytest.mark.parametrize("in_run", [True, False])
def test_eval_checks_the_checkpoint_and_trusts_only_the_modules_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_run: bool
) -> None:
    module = tmp_path / "code" / "mymodels.py"
    module.parent.mkdir()
    module.write_text(
        "import lightning.pytorch as pl\n\n\nclass Net(pl.LightningModule):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(module.parent))
    ckpt = _checkpoint_of_my_model(tmp_path / "run", in_run)
    with pytest.raises(
        UserError, match=r"model\._target_='mymodels\.Net' is refused.*trust=\[mymodels\]"
    ):
        check_checkpoint_to_evaluate(OmegaConf.create({"ckpt_path": str(ckpt), "trust": []}))
    with pytest.raises(UserError, match="is refused"):
        check_checkpoint_to_evaluate(OmegaConf.create({"ckpt_path": str(ckpt), "trust": ["other"]}))
    check_checkpoint_to_evaluate(OmegaConf.create({"ckpt_path": str(ckpt), "trust": ["mymodels"]}))


def test_eval_without_a_checkpoint_yet_is_left_to_its_own_message() -> None:
    check_checkpoint_to_evaluate(None)
    check_checkpoint_to_evaluate(OmegaConf.create({"ckpt_path": "???", "trust": []}))
    with pytest.raises(UserError, match="does not exist"):
        check_checkpoint_to_evaluate(OmegaConf.create({"ckpt_path": "/nowhere.ckpt"}))


def test_composition_errors_of_every_kind_are_one_line() -> None:
    no_mark = yaml.MarkedYAMLError(problem="mapping values are not allowed here")
    assert str(composition_error(no_mark, "train", [])) == (
        "a config file: YAML syntax error (mapping values are not allowed here); fix the file."
    )
    no_problem = yaml.MarkedYAMLError(context="while scanning")
    assert "YAML syntax error (while scanning)" in str(composition_error(no_problem, "train", []))
    # only Hydra's missing-config error lists options; another error's text is its first line
    listed = ValueError("something else\nAvailable options in 'model':\n\tvae")
    assert str(composition_error(listed, "train", [])) == "something else"
    unnamed = MissingConfigException("In 'train': Available options in 'model':\n\tvae\n\tebm")
    assert str(composition_error(unnamed, "train", [])) == (
        "?='?': no such option. Available options in '?': vae, ebm."
    )
    override = ConfigCompositionException("Could not override 'model.nope'.")
    assert str(composition_error(override, "train", ["model.nope=a=b"])).startswith(
        "model.nope=a=b: no such key (model has "
    )
    assert str(composition_error(override, "train", [])).startswith("model.nope=: no such key")
    assert str(composition_error(RuntimeError(""), "train", [])) == "RuntimeError"


def test_a_log_folder_on_a_read_only_filesystem_is_refused_even_for_root() -> None:
    """/proc cannot be written by anyone, root included (CI runs as root, so file permissions
    alone would not show the check writes into the folder itself)."""
    with pytest.raises(UserError, match=r"^paths\.log_dir=/proc/kexue-logs cannot be written \("):
        check_writable("/proc/kexue-logs")


def test_a_resume_keeps_the_saved_overrides_the_command_line_does_not_replace(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    saved = ["+trainer.gradient_clip_val=1.0", "model.tag=a=b", "seed=1"]
    OmegaConf.save(OmegaConf.create(saved), run / ".hydra" / "overrides.yaml")
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {}, "global_step": 2}, run / "checkpoints" / "last.ckpt")
    argv = ["train.py", f"resume={run}", "trainer.gradient_clip_val=0.5", "model.tag=c"]
    assert resume_argv(argv) == ["train.py", "seed=1", *argv[1:]]
    kept = resume_argv(["train.py", f"resume={run}", "+seed=2"])
    assert kept == ["train.py", *saved[:2], f"resume={run}", "+seed=2"]
