"""Optuna pruning in a Hydra sweep: the storage that tells a job its trial and records pruned trials
as pruned (`src/utils/optuna_trials.py`), and the callback that reports and prunes
(`src/callbacks/optuna_pruning.py`). The whole loop through train.py is the slow test at the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from src.callbacks.optuna_pruning import OptunaPruning
from src.utils.errors import UserError
from src.utils.optuna_study import continue_study
from src.utils.optuna_trials import JOB, PRUNED, SWEEP, SweepStorage, this_jobs_trial
from src.utils.resume import register_resolvers
from tests.conftest import ROOT, run_script, write_fake_mnist

optuna.logging.set_verbosity(optuna.logging.WARNING)
EXPERIMENTAL = ExperimentalWarning.__name__
pytestmark = pytest.mark.filterwarnings(f"ignore::{ExperimentalWarning.__module__}.{EXPERIMENTAL}")


def _study(url: str, sweep_dir: str = "sweep/a") -> optuna.Study:
    return optuna.create_study(
        study_name="s", storage=SweepStorage(url, sweep_dir), load_if_exists=True
    )


def test_the_trials_a_sweeper_starts_are_tagged_with_its_folder_and_their_job_numbers(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study = _study(url)
    first = study.ask()
    study.enqueue_trial({"x": 1.0})  # a retried trial (continue_study queues it) starts next
    queued, third = study.ask(), study.ask()
    assert queued.number == 1 and queued.system_attrs["fixed_params"] == {"x": 1.0}
    tags = [(t.system_attrs[SWEEP], t.system_attrs[JOB]) for t in (first, queued, third)]
    assert tags == [("sweep/a", 0), ("sweep/a", 1), ("sweep/a", 2)]
    other = _study(url, "sweep/b").ask()  # another sweeper, on the same database
    assert (other.system_attrs[SWEEP], other.system_attrs[JOB]) == ("sweep/b", 0)
    stored = optuna.load_study(study_name="s", storage=url).trials
    assert [t.system_attrs[JOB] for t in stored] == [0, 1, 2, 0]  # in the database, for the jobs


def test_a_trial_its_job_pruned_is_recorded_pruned_with_its_value_and_no_other(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study = _study(url)
    trials = [study.ask() for _ in range(4)]
    job_side = optuna.load_study(study_name="s", storage=url)  # the job's own connection
    for trial in trials[:2]:
        optuna.trial.Trial(job_side, trial._trial_id).set_system_attr(PRUNED, 1)
    study.tell(trials[0], 7.5)  # as the sweeper tells every job that returned a value
    study.tell(trials[1], state=TrialState.FAIL)  # pruned, then failed in its test: a failure
    study.tell(trials[2], 3.0)
    study.tell(trials[3], state=TrialState.FAIL)
    stored = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in stored] == [
        TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL
    ]
    assert stored[0].value == 7.5 and stored[2].value == 3.0
    assert study.best_trial.number == 2  # a pruned trial is never the best


@pytest.fixture
def in_sweep(tmp_path: Path) -> Iterator[DictConfig]:
    """HydraConfig as the vae_optuna preset's job 1 sees it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hparams_search=vae_optuna", f"paths.log_dir={tmp_path}"],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.job.num = 1
    HydraConfig.instance().set_config(cfg)
    yield cfg
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def test_a_job_finds_its_own_trial_among_the_running_ones(
    tmp_path: Path, in_sweep: DictConfig
) -> None:
    storage = in_sweep.hydra.sweeper.storage
    assert storage._target_ == "src.utils.optuna_trials.SweepStorage"
    assert storage.url == f"sqlite:///{tmp_path}/vae_optuna/optuna.db"
    argv = ["train.py", "hparams_search=vae_optuna"]
    assert continue_study(in_sweep, argv) == argv  # a new study, in the folder the node names
    assert (tmp_path / "vae_optuna").is_dir()
    theirs = optuna.create_study(study_name="vae", storage=SweepStorage(storage.url, "elsewhere"))
    ours_storage = SweepStorage(storage.url, str(tmp_path / "sweep"))
    ours = optuna.create_study(study_name="vae", storage=ours_storage, load_if_exists=True)
    [theirs.ask() for _ in range(2)]
    mine = [ours.ask() for _ in range(3)][1]
    ours.tell(ours.ask(), 1.0)  # a finished trial is nobody's
    pruner = optuna.pruners.NopPruner()
    trial = this_jobs_trial(pruner)
    assert trial.number == mine.number == 3 and trial.study.pruner is pruner
    trial.report(2.5, step=0)
    stored = optuna.load_study(study_name="vae", storage=storage.url).trials[3]
    assert stored.intermediate_values == {0: 2.5}
    ours.tell(mine, 2.5)
    with pytest.raises(UserError, match="no running trial of the Optuna study vae belongs to job"):
        this_jobs_trial()


@pytest.mark.parametrize("preset", ["vae_optuna", "crf_tagger_optuna"])
def test_the_presets_prune_by_the_median_and_keep_their_study_where_jobs_find_it(
    preset: str,
) -> None:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={preset}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    pruning = cfg.callbacks.optuna_pruning
    assert pruning._target_ == "src.callbacks.optuna_pruning.OptunaPruning"
    assert pruning.pruner._target_ == "optuna.pruners.MedianPruner"
    assert cfg.hydra.sweeper.storage._target_ == "src.utils.optuna_trials.SweepStorage"
    assert cfg.hydra.sweeper.storage.sweep_dir == cfg.hydra.sweep.dir


def test_outside_an_optuna_sweep_the_callback_is_refused_in_one_line() -> None:
    HydraConfig.instance().cfg = None
    with pytest.raises(UserError, match=r"not one\. Run a preset .*or leave out callbacks\."):
        this_jobs_trial()


class StubTrial:
    """Reports recorded; prunes from a chosen step."""

    def __init__(self, prune_from: int) -> None:
        self.prune_from, self.number = prune_from, 4
        self.reports: list[tuple[float, int]] = []
        self.attrs: dict[str, int] = {}

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.reports[-1][1] >= self.prune_from

    def set_system_attr(self, key: str, value: int) -> None:
        self.attrs[key] = value


def _trainer(epoch: int, metrics: dict, sanity: bool = False) -> SimpleNamespace:
    strategy = SimpleNamespace(broadcast=lambda value: value)
    return SimpleNamespace(
        current_epoch=epoch, callback_metrics=metrics, sanity_checking=sanity,
        is_global_zero=True, should_stop=False, strategy=strategy,
    )


def test_the_callback_reports_each_validated_epoch_and_stops_when_the_pruner_says() -> None:
    callback = OptunaPruning(monitor="val/loss")
    callback.trial = StubTrial(prune_from=2)
    sanity = _trainer(0, {"val/loss": 9.0}, sanity=True)
    callback.on_validation_end(sanity, None)
    callback.on_train_epoch_end(_trainer(0, {"val/loss": 9.0}), None)
    assert callback.trial.reports == []  # the sanity check is no epoch's value
    for epoch, value in enumerate([3.0, 2.0]):
        trainer = _trainer(epoch, {"val/loss": value, "val/other": 0.0})
        callback.on_validation_end(trainer, None)
        callback.on_validation_end(trainer, None)  # validated twice in the epoch: one report
        callback.on_train_epoch_end(trainer, None)
        assert not trainer.should_stop
    callback.on_train_epoch_end(_trainer(2, {"val/loss": 1.0}), None)  # no validation: no report
    assert callback.trial.reports == [(3.0, 0), (2.0, 1)] and callback.trial.attrs == {}
    trainer = _trainer(3, {"val/loss": 1.5})
    callback.on_validation_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and callback.trial.attrs == {PRUNED: 3}
    assert callback.trial.reports[-1] == (1.5, 3)


def test_a_pruning_decision_reaches_every_process() -> None:
    callback = OptunaPruning(monitor="val/loss")
    trainer = _trainer(0, {})
    trainer.is_global_zero = False  # rank 1: no trial of its own, rank 0's decision broadcast
    trainer.strategy = SimpleNamespace(broadcast=lambda value: True)
    callback.on_validation_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


def test_a_monitor_the_model_does_not_log_is_named() -> None:
    callback = OptunaPruning(monitor="val/nelbo")
    callback.trial = StubTrial(prune_from=0)
    trainer = _trainer(0, {"val/loss": 1.0})
    callback.on_validation_end(trainer, None)
    with pytest.raises(UserError, match="logs no val/nelbo to report"):
        callback.on_train_epoch_end(trainer, None)


class PruneFrom(optuna.pruners.BasePruner):
    """Prunes the trials numbered `trial` and later from step `step` on (the slow test's)."""

    def __init__(self, trial: int, step: int) -> None:
        self.trial, self.step = trial, step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number >= self.trial and (trial.last_step or 0) >= self.step


@pytest.mark.slow
def test_a_vae_search_prunes_through_train_py(tmp_path: Path) -> None:
    """The vae_optuna preset with a pruner that stops trial 1 after its second epoch: trial 0
    trains its 3 epochs and completes, trial 1 stops after 2, is recorded pruned with the value
    it reported there, and the sweep still ends with its results."""
    data = write_fake_mnist(tmp_path / "data", n_train=300, n_test=100)
    result = run_script(
        "train.py", "hparams_search=vae_optuna", "data=mnist", f"data.data_dir={data}",
        "data.val_size=100", "data.batch_size=50", "data.eval_batch_size=100",
        "model.iwae_samples=2", "extras.print_config=false", f"paths.log_dir={tmp_path}",
        "logger=csv", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
        "hydra.sweeper.n_trials=2",
        "callbacks.optuna_pruning.pruner._target_=tests.test_optuna_pruning.PruneFrom",
        "~callbacks.optuna_pruning.pruner.n_startup_trials",
        "~callbacks.optuna_pruning.pruner.n_warmup_steps",
        "+callbacks.optuna_pruning.pruner.trial=1", "+callbacks.optuna_pruning.pruner.step=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Optuna pruned trial 1 after epoch 1" in result.stdout + result.stderr
    study = optuna.load_study(study_name="vae", storage=f"sqlite:///{tmp_path}/vae_optuna/optuna.db")
    complete, pruned = study.trials
    assert (complete.state, pruned.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert sorted(complete.intermediate_values) == [0, 1, 2]
    assert sorted(pruned.intermediate_values) == [0, 1]
    (sweep,) = (tmp_path / "vae_optuna" / "multiruns").iterdir()
    for job, trial in enumerate(study.trials):
        lines = (sweep / str(job) / "csv" / "metrics.csv").read_text().splitlines()
        header = lines[0].split(",")
        column = header.index("val/nelbo")
        logged = [float(r.split(",")[column]) for r in lines[1:] if r.split(",")[column]]
        assert logged == pytest.approx(list(trial.intermediate_values.values()), rel=1e-6)
        returned = json.loads((sweep / str(job) / "metrics.json").read_text())["val/nelbo"]
        assert trial.value == pytest.approx(returned, rel=1e-6)
    assert pruned.value == pytest.approx(pruned.intermediate_values[1], rel=1e-6)
    assert study.best_trial.number == 0


def test_the_entry_point_continues_a_study_that_a_kill_left_with_a_running_trial(
    tmp_path: Path,
) -> None:
    """`prepare` composes the command line with Hydra's own config (where the sweeper's storage
    is) and hands it on with the trials still missing."""
    from src.utils.startup import prepare

    (tmp_path / "vae_optuna").mkdir()
    url = f"sqlite:///{tmp_path}/vae_optuna/optuna.db"
    study = optuna.create_study(study_name="vae", storage=url)
    study.tell(study.ask(), 1.0)
    study.ask()  # running when the sweep was killed
    argv = ["train.py", "hparams_search=vae_optuna", f"paths.log_dir={tmp_path}"]
    assert prepare([*argv, "hydra.sweeper.n_trials=3"], "train") == [
        *argv, "hydra.sweeper.n_trials=2"
    ]
    stored = optuna.load_study(study_name="vae", storage=url)
    states = [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]  # failed, queued again
    assert [t.state for t in stored.trials] == states
