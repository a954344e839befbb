"""An Optuna search that survives being killed.

The `hparams_search` presets keep their study in a database (`hydra.sweeper.storage`: SQLite at
`<paths.log_dir>/<task_name>/optuna.db` by default, or any SQLAlchemy URL, e.g. one database that
the nodes of a cluster share). Running the same command again continues that study
(`continue_study`, before Hydra starts):
- the trials the database still holds as running were cut off by the kill: they are marked
  failed (with the user attribute `interrupted`) and their parameters queued, so the sweeper's
  next `ask` retries them first;
- `hydra.sweeper.n_trials` counts the study's trials: only those still missing run (completed,
  pruned and failed trials count as done; interrupted ones do not, their retries do).
Each invocation writes its trials into a new sweep folder, so no earlier job folder is touched;
the best value and parameters in `optimization_results.yaml` are the whole study's.

Pruning: Hydra's sweeper asks the study for a trial per job and hands the job only its overrides,
so the presets keep the study in a `src.utils.optuna_trials.SweepStorage`, through which each job
finds its trial and a pruned trial is recorded as pruned (`src/callbacks/optuna_pruning.py`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.utils.resume import NothingToResume

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"


def _storage_url(cfg: DictConfig) -> str | None:
    sweeper = OmegaConf.select(cfg, "hydra.sweeper")
    if sweeper is None or "optuna" not in str(sweeper.get("_target_", "")).lower():
        return None
    storage = sweeper.get("storage")
    if isinstance(storage, DictConfig):
        storage = storage.get("url")
    return str(storage) if storage else None


def continue_study(cfg: DictConfig | None, argv: list[str]) -> list[str]:
    """The command line that continues the study `cfg`'s Optuna sweeper keeps, if any (see the
    module docstring); a study that has all its trials raises NothingToResume."""
    url = _storage_url(cfg) if cfg is not None else None
    if url is None:
        return argv
    if url.startswith(SQLITE):
        Path(url[len(SQLITE) :]).parent.mkdir(parents=True, exist_ok=True)
    import optuna
    from optuna.trial import TrialState

    storage = optuna.storages.get_storage(url)
    name = str(cfg.hydra.sweeper.study_name)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return argv  # a new study
    trials = storage.get_all_trials(study_id, deepcopy=False)
    study = optuna.load_study(study_name=name, storage=storage)
    interrupted = [t for t in trials if t.state == TrialState.RUNNING]
    for trial in interrupted:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        set_state = getattr(storage, "set_trial_state_values", None)  # Optuna 3; 2.x below
        (set_state or storage.set_trial_state)(trial_id, TrialState.FAIL)
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in Optuna 2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(trial.params)
        queued = storage.get_all_trials(study_id, deepcopy=False)[-1]
        queued_id = storage.get_trial_id_from_study_id_trial_number(study_id, queued.number)
        storage.set_trial_user_attr(queued_id, "retry_of", trial.number)
    done = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    wanted = int(cfg.hydra.sweeper.n_trials)
    left = wanted - len(done)
    if left <= 0:
        raise NothingToResume(
            f"the study {name} in {url} has its {wanted} trials ({len(done)} done): nothing to "
            f"run. For more, give hydra.sweeper.n_trials=<more than {len(done)}>."
        )
    log.warning(
        f"continuing the study {name} in {url}: {len(done)} trials done, "
        f"{len(interrupted)} interrupted and queued again, {left} to run"
    )
    kept = [a for a in argv if not a.startswith("hydra.sweeper.n_trials=")]
    return [*kept, f"hydra.sweeper.n_trials={left}"]
