"""Which Optuna trial a Hydra job is, and pruned trials recorded as pruned.

Hydra's Optuna sweeper asks the study for one trial per job and hands each job only its overrides;
it tells the study the value the job returned, as complete, and knows nothing of pruning. The
`hparams_search` presets therefore keep their study in a `SweepStorage` (`hydra.sweeper.storage`):
- it tags each trial the sweeper starts with its job, the sweep folder and the job's number
  (Hydra numbers a sweep's jobs in the order the sweeper asks for their trials), so that the job
  finds its trial (`this_jobs_trial`) and reports to it (`src/callbacks/optuna_pruning.py`);
- a job that prunes its trial marks it (`PRUNED`, the epoch) and ends normally, returning the
  monitored value; when the sweeper then reports the trial complete, it is recorded as pruned,
  with that value, as Optuna's own loop records one. A pruned job is not a failure.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import Trial, TrialState

from src.utils.errors import UserError

SWEEP, JOB, PRUNED = "hydra_sweep_dir", "hydra_job_num", "pruned_at_epoch"


class SweepStorage(_CachedStorage):
    """Optuna's database storage, as a URL gives it (a cache over `RDBStorage`), that tags the
    trials it starts with their jobs and records the ones their jobs pruned as pruned."""

    def __init__(self, url: str, sweep_dir: str) -> None:
        super().__init__(RDBStorage(url))
        self.url, self.sweep_dir, self.started = url, str(sweep_dir), 0

    def _tag(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, SWEEP, self.sweep_dir)
        self.set_trial_system_attr(trial_id, JOB, self.started)
        self.started += 1

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None:  # asked for; a queued trial (a template) starts below
            self._tag(trial_id)
        return trial_id

    def set_trial_state(self, trial_id: int, state: TrialState) -> bool:
        if state == TrialState.RUNNING:
            started = super().set_trial_state(trial_id, state)
            if started:
                self._tag(trial_id)
            return started
        if state == TrialState.COMPLETE and PRUNED in self._backend.get_trial_system_attrs(
            trial_id
        ):
            state = TrialState.PRUNED
        return super().set_trial_state(trial_id, state)

    def __repr__(self) -> str:  # the sweeper logs its storage
        return self.url


def _target_name() -> str:
    return f"{SweepStorage.__module__}.{SweepStorage.__qualname__}"


def this_jobs_trial(pruner: Any = None) -> Trial:
    """The Optuna trial of the running Hydra job, found through its sweeper's `SweepStorage`, as
    a trial that reports to the study and prunes by `pruner`."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    storage = OmegaConf.select(hydra_cfg, "sweeper.storage") if hydra_cfg else None
    if not (isinstance(storage, DictConfig) and storage.get("_target_") == _target_name()):
        raise UserError(
            "optuna_pruning reports to the trial of an Optuna sweep whose study is kept in "
            f"{_target_name()} (hydra.sweeper.storage, as the hparams_search presets keep it): "
            "this run is not one. Run a preset (python train.py hparams_search=vae_optuna) or "
            "leave out callbacks.optuna_pruning."
        )
    sweep_dir, job = str(hydra_cfg.sweep.dir), int(hydra_cfg.job.num)
    study = optuna.load_study(
        study_name=str(hydra_cfg.sweeper.study_name), storage=str(storage.url), pruner=pruner
    )
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.system_attrs.get(SWEEP) == sweep_dir and frozen.system_attrs.get(JOB) == job:
            return Trial(study, frozen._trial_id)
    raise UserError(
        f"no running trial of the Optuna study {study.study_name} belongs to job {job} of "
        f"{sweep_dir}: was the study's database changed while the sweep ran?"
    )
