"""Sweeps as subprocesses on tiny synthetic data: the basic and joblib launchers, the summary
table, Optuna, submitit's local executor, and a failing trial inside a sweep."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from omegaconf import DictConfig

from tests.conftest import ROOT, run_script, write_fake_mnist

TINY = [
    "debug=fdr",
    "data=mnist",
    "data.val_size=100",
    "data.batch_size=50",
    "data.eval_batch_size=100",
    "model.iwae_samples=2",
    "extras.print_config=false",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("sweep_data"), n_train=300, n_test=100)


def _sweep(log_dir: Path, data: Path, *overrides: str, ok: bool = True) -> Path:
    result = run_script(
        "train.py", "-m", *TINY, f"data.data_dir={data}", f"paths.log_dir={log_dir}", *overrides
    )
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    (sweep,) = (log_dir / "debug" / "multiruns").iterdir()
    return sweep


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _assert_grid(sweep: Path) -> None:
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        assert math.isfinite(json.loads((job / "metrics.json").read_text())["val/nelbo"])


def test_two_by_two_multirun_and_its_summary(tmp_path: Path, data: Path) -> None:
    sweep = _sweep(tmp_path, data, "model.latent.dim=2,3", "seed=1,2")
    _assert_grid(sweep)
    result = run_script("scripts/summarize.py", str(sweep), "--metrics", "val/nelbo")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model.latent.dim"], r["seed"], r["status"]) for r in rows] == [
        ("2", "1", "ok"),
        ("2", "2", "ok"),
        ("3", "1", "ok"),
        ("3", "2", "ok"),
    ]
    for row, job in zip(rows, _jobs(sweep), strict=True):
        logged = json.loads((job / "metrics.json").read_text())["val/nelbo"]
        assert float(row["val/nelbo"]) == pytest.approx(logged, rel=1e-5)
    with open(sweep / "summary_seeds.csv") as f:
        settings = list(csv.DictReader(f))
    assert [(s["model.latent.dim"], s["n"]) for s in settings] == [("2", "2"), ("3", "2")]
    pair = [json.loads((job / "metrics.json").read_text())["val/nelbo"] for job in _jobs(sweep)[:2]]
    assert float(settings[0]["val/nelbo mean"]) == pytest.approx(sum(pair) / 2, rel=1e-5)
    assert float(settings[0]["val/nelbo std"]) == pytest.approx(
        abs(pair[0] - pair[1]) / 2**0.5, rel=1e-4
    )
    assert "| model.latent.dim | seed | status | val/nelbo |" in (sweep / "summary.md").read_text()
    assert len(list((sweep / "summary_tensorboard").iterdir())) == 2


def test_a_failing_trial_does_not_stop_its_sweep(tmp_path: Path, data: Path) -> None:
    sweep = _sweep(tmp_path, data, "data.val_size=0,100", ok=False)
    failed, done = _jobs(sweep)
    assert "data.val_size=0 must be between" in (failed / "error.txt").read_text()
    assert not (failed / "metrics.json").exists()
    assert math.isfinite(json.loads((done / "metrics.json").read_text())["val/nelbo"])
    assert run_script("scripts/summarize.py", str(sweep)).returncode == 0
    with open(sweep / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["failed", "ok"]


@pytest.mark.slow
def test_joblib_multirun(tmp_path: Path, data: Path) -> None:
    sweep = _sweep(
        tmp_path,
        data,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.latent.dim=2,3",
        "seed=1,2",
    )
    _assert_grid(sweep)


@pytest.mark.slow
def test_optuna_returns_the_best_logged_value(tmp_path: Path, data: Path) -> None:
    sweep = _sweep(
        tmp_path,
        data,
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=3",
    )
    jobs = _jobs(sweep)
    assert len(jobs) == 3
    logged = [json.loads((job / "metrics.json").read_text())["val/nelbo"] for job in jobs]
    assert len(set(logged)) == 3  # three different trials
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(logged), rel=1e-6)
    best = jobs[logged.index(min(logged))]
    best_overrides = (best / ".hydra" / "overrides.yaml").read_text()
    for key, value in results["best_params"].items():
        assert f"{key}={value}" in best_overrides


@pytest.mark.slow
def test_submitit_local_runs_a_job_to_completion(tmp_path: Path, data: Path) -> None:
    sweep = _sweep(tmp_path, data, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    (job,) = _jobs(sweep)
    assert math.isfinite(json.loads((job / "metrics.json").read_text())["val/nelbo"])
    assert (sweep / ".submitit").is_dir()


# the families this convention was written with; the experiments of later models follow it too
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_configs_follow_the_convention(make_cfg, experiment: str) -> None:
    """Each experiment names its runs after itself, tags them, fixes its seed and says in comments
    what it costs and where its results are: `# budget: ...` and `# results: docs/<page>.md, "<a
    heading of that page>"` (the figures themselves live in the docs, not in the config)."""
    text = (ROOT / "conf/experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert "\n# budget: " in text
    ((page, section),) = re.findall(r'\n# results: (docs/[\w/]+\.md), "([^"]+)"\n', text)
    headings = re.findall(r"(?m)^#+ (.+)$", (ROOT / page).read_text())
    assert any(heading.startswith(section) for heading in headings), (page, section)
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.task_name == experiment and cfg.tags and isinstance(cfg.seed, int)


def _slurm_launcher(*overrides: str) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.utils.resume import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True
        )
    return cfg.hydra.launcher


def test_slurm_launcher_runs_one_task_per_device() -> None:
    launcher = _slurm_launcher("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.timeout_min > 0 and "partition" in launcher


def test_slurm_launcher_asks_for_gpus_only_for_a_gpu_trainer() -> None:
    """A CPU-only cluster refuses a job that asks for a GPU gres: the default trainer
    (accelerator auto) and trainer=cpu ask for none, trainer=gpu for its one."""
    assert _slurm_launcher().gpus_per_node is None
    assert _slurm_launcher("trainer=cpu", "trainer.devices=2").gpus_per_node is None
    assert _slurm_launcher("trainer=gpu").gpus_per_node == 1
    assert (
        _slurm_launcher(
            "trainer=gpu", "trainer.accelerator=cuda", "trainer.devices=2"
        ).gpus_per_node
        == 2
    )
    chosen = _slurm_launcher(
        "hydra.launcher.account=lab",
        "hydra.launcher.qos=short",
        "hydra.launcher.mem_gb=16",
        "hydra.launcher.cpus_per_task=4",
        "+hydra.launcher.additional_parameters.exclusive=true",
    )
    assert (chosen.account, chosen.qos, chosen.mem_gb, chosen.cpus_per_task) == (
        "lab",
        "short",
        16,
        4,
    )
    assert chosen.additional_parameters == {"exclusive": True}


def test_submitits_repeated_sacct_warnings_come_out_as_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from src.utils.launcher import SACCT_OFF, quiet_sacct

    logger = logging.getLogger("submitit")
    quiet_sacct()
    quiet_sacct()  # once per process, however often it is called
    try:
        with caplog.at_level(logging.WARNING):
            for call in range(1, 4):
                logger.warning(
                    f"Call #{call} - Bypassing sacct error boom, status may be inaccurate."
                )
            logger.warning("another warning")
        assert [(r.name, r.getMessage()) for r in caplog.records] == [
            ("src.utils.launcher", SACCT_OFF),
            ("submitit", "another warning"),
        ]
        assert "once" in SACCT_OFF and "accounting" in SACCT_OFF
    finally:
        logger.filters.clear()


def test_sacct_runs_with_its_stderr_dropped_and_its_output_and_status_kept(
    tmp_path: Path,
) -> None:
    import subprocess

    from submitit.slurm.slurm import SlurmInfoWatcher

    from src.utils.launcher import quiet_sacct

    quiet_sacct()
    quiet_sacct()  # wrapped once
    watcher = SlurmInfoWatcher()
    watcher.register_job("12")
    command = watcher._make_command()
    assert command[:4] == ["sh", "-c", 'exec "$@" 2>/dev/null', "sacct"]
    assert command[4:] == ["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", "12"]
    fake = tmp_path / "sacct"  # what a cluster without accounting does
    fake.write_text(
        "#!/bin/sh\necho 'JobID|State'\necho 'Slurm accounting is disabled' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    run = subprocess.run([*command[:4], str(fake), *command[5:]], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (1, "JobID|State\n", "")


class KillTrial(pl.Callback):
    """SIGKILL the whole sweep process at the first training step of job `job`, once (`flag`)."""

    def __init__(self, job: int, flag: str) -> None:
        self.job, self.flag = job, Path(flag)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.get().job.num == self.job and not self.flag.exists():
            self.flag.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_an_optuna_search_killed_mid_trial_continues_its_study(tmp_path: Path, data: Path) -> None:
    """Trial 1 of 3 is killed with the whole process; the same command again marks it failed,
    retries its parameters first and runs the trials still missing: 3 done, none run twice."""
    import optuna

    command = [
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=3",
        "+callbacks.kill._target_=tests.test_sweeps.KillTrial",
        "+callbacks.kill.job=1",
        f"+callbacks.kill.flag={tmp_path / 'killed'}",
    ]
    first = run_script(
        "train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={tmp_path}", *command
    )
    assert first.returncode == -signal.SIGKILL
    again = run_script(
        "train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={tmp_path}", *command
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 trials done, 1 interrupted and queued again, 2 to run" in again.stderr
    study = optuna.load_study(study_name="vae", storage=f"sqlite:///{tmp_path}/debug/optuna.db")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    killed, retried = study.trials[1], study.trials[2]
    assert killed.user_attrs["interrupted"] is True and "retry_of" not in killed.user_attrs
    assert retried.params == killed.params and retried.user_attrs["retry_of"] == 1
    sweeps = sorted((tmp_path / "debug" / "multiruns").iterdir())
    assert [len(_jobs(s)) for s in sweeps] == [2, 2]  # a new folder: the first is left as it was
    results = yaml.safe_load((sweeps[1] / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    done = run_script(
        "train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={tmp_path}", *command
    )
    assert done.returncode == 0 and "has its 3 trials (3 done): nothing to run" in done.stdout


def _optuna_cfg(url: str, n_trials: int, name: str = "s") -> DictConfig:
    from omegaconf import OmegaConf

    sweeper = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    return OmegaConf.create(
        {"hydra": {"sweeper": {"_target_": sweeper, "storage": url, "study_name": name,
                               "n_trials": n_trials}}}
    )  # fmt: skip


def test_continuing_a_study_retries_the_cut_off_trials_and_runs_only_the_missing_ones(
    tmp_path: Path,
) -> None:
    import optuna

    from src.utils.optuna_study import continue_study
    from src.utils.resume import NothingToResume

    url = f"sqlite:///{tmp_path}/new/folder/optuna.db"
    argv = ["train.py", "hparams_search=x", "hydra.sweeper.n_trials=4"]
    assert continue_study(_optuna_cfg(url, 4), argv) == argv  # a new study: as it is
    assert (tmp_path / "new" / "folder").is_dir()  # SQLite's folder made for it
    optuna.create_study(study_name="unrelated", storage=url)  # a shared database: found by name
    study = optuna.create_study(study_name="s", storage=url)
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 1.0)
    cut = study.ask()
    cut.suggest_float("x", 0, 1)  # running when the process was killed
    assert continue_study(_optuna_cfg(url, 4), argv) == ["train.py", "hparams_search=x",
                                                         "hydra.sweeper.n_trials=3"]  # fmt: skip
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert trials[1].user_attrs == {"interrupted": True}
    assert trials[2].user_attrs == {"retry_of": 1} and trials[2].params == {}  # queued params
    assert study.get_trials()[2].system_attrs["fixed_params"] == cut.params
    with pytest.raises(NothingToResume, match="has its 1 trials \\(1 done\\): nothing to run"):
        continue_study(_optuna_cfg(url, 1), argv)
    assert continue_study(_optuna_cfg(url, 4, name="other"), argv) == argv
    basic = _optuna_cfg(url, 4)
    basic.hydra.sweeper._target_ = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    assert continue_study(basic, argv) == argv
    assert continue_study(None, argv) == argv


@pytest.mark.parametrize(
    ("launcher", "quietened"),
    [([], False), (["-m", "hydra/launcher=slurm"], True)],
)
def test_only_a_submitit_launcher_imports_submitit_to_quieten_sacct(
    launcher: list[str], quietened: bool
) -> None:
    """A run that polls no sacct pays no start-up for it."""
    import subprocess
    import sys

    probe = (
        "import sys; from src.utils.startup import prepare; "
        f"prepare(['train.py', *{launcher!r}], 'train'); "
        "m = sys.modules.get('submitit.slurm.slurm'); "
        "print(m is not None, m is not None and getattr(m.SlurmInfoWatcher._make_command, "
        "'quiet', False))"
    )
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    assert out == [str(quietened), str(quietened)]
