"""The trackers across a run's life (`src/utils/tracking.py`) and what MLflow receives
(`src/utils/images.py`, `log_final_hparams`): on a real MLflow store in a temporary folder. The
end-to-end train-and-resume runs, read back from a real `mlflow server`, are in
test_tracking_server.py (slow)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
from omegaconf import OmegaConf

from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure, log_image_grid
from src.utils.run import log_final_hparams, report_run_dir
from src.utils.tracking import (
    MLFLOW_RUN_ID,
    ResumableCSVLogger,
    continue_trackers,
    new_params,
    record_trackers,
    require_logger_packages,
)

TB = "lightning.pytorch.loggers.TensorBoardLogger"
ML = "lightning.pytorch.loggers.MLFlowLogger"


def _cfg(**loggers: dict) -> OmegaConf:
    return OmegaConf.create({"logger": loggers})


def _logger(tmp_path: Path, **kwargs) -> MLFlowLogger:
    return MLFlowLogger(
        experiment_name="tracking",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
        **kwargs,
    )


def _artifacts(lg: MLFlowLogger, path: str | None = None) -> list[str]:
    found = []
    for item in lg.experiment.list_artifacts(lg.run_id, path):
        found += _artifacts(lg, item.path) if item.is_dir else [item.path]
    return found


def test_a_logger_whose_package_is_missing_is_refused_in_one_line_naming_the_extra(
    monkeypatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    cfg = _cfg(mlflow={"_target_": ML})
    with pytest.raises(UserError) as err:
        require_logger_packages(cfg)
    message = str(err.value)
    assert "\n" not in message and "mlflow package" in message
    assert "pip install -e '.[mlflow]'" in message
    require_logger_packages(_cfg(tb={"_target_": TB}))  # no MLflow asked for: nothing to say
    monkeypatch.undo()
    require_logger_packages(cfg)  # installed here


def test_continue_trackers_names_the_mlflow_run_after_its_directory_and_reuses_its_id(
    tmp_path: Path,
) -> None:
    out = tmp_path / "2026-12-01_10-00-00_000001"
    out.mkdir()
    cfg = _cfg(tb={"_target_": TB}, mlflow={"_target_": ML})
    continue_trackers(cfg, str(out), resumed_step=None)
    assert cfg.logger.mlflow.run_name == out.name and cfg.logger.mlflow.get("run_id") is None
    assert "purge_step" not in cfg.logger.tb  # a new run hides nothing

    (out / MLFLOW_RUN_ID).write_text("abc123\n")
    again = _cfg(tb={"_target_": TB}, mlflow={"_target_": ML, "run_name": "mine"})
    continue_trackers(again, str(out), resumed_step=40)
    assert again.logger.mlflow.run_id == "abc123" and again.logger.mlflow.run_name == "mine"
    assert again.logger.tb.purge_step == 40

    given = _cfg(mlflow={"_target_": ML, "run_id": "given"})
    continue_trackers(given, str(out), resumed_step=40)
    assert given.logger.mlflow.run_id == "given"  # an explicit run id wins
    nulled = _cfg(tb=None, mlflow={"_target_": ML})  # logger.tb=null on the command line
    continue_trackers(nulled, str(out), resumed_step=40)
    require_logger_packages(nulled)
    assert nulled.logger.tb is None and nulled.logger.mlflow.run_id == "abc123"


def test_a_run_directory_records_its_mlflow_run_and_a_second_logger_continues_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    first = _logger(tmp_path, run_name="run")
    record_trackers([first], str(out))
    run_id = (out / MLFLOW_RUN_ID).read_text().strip()
    assert run_id == first.run_id
    first.log_metrics({"train/loss": 2.0}, step=1)
    first.finalize("success")

    cfg = _cfg(mlflow={"_target_": ML})
    continue_trackers(cfg, str(out), resumed_step=1)
    second = _logger(tmp_path, run_id=cfg.logger.mlflow.run_id)
    second.log_metrics({"train/loss": 1.0}, step=2)
    history = second.experiment.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]
    assert len(second.experiment.search_runs([second.experiment_id])) == 1


def test_a_resumed_run_logs_only_the_params_mlflow_does_not_have(tmp_path: Path, caplog) -> None:
    """MLflow refuses to change a logged param: the resumed run (a larger budget) keeps the first
    value, says so, and adds the params that are new."""
    lg = _logger(tmp_path)
    cfg = OmegaConf.create({"trainer": {"max_epochs": 1}, "seed": 3})
    log_final_hparams([lg], cfg, {"val/loss": 0.5})
    assert lg.experiment.get_run(lg.run_id).data.params == {"trainer/max_epochs": "1", "seed": "3"}

    resumed = OmegaConf.create({"trainer": {"max_epochs": 2}, "seed": 3, "tags": ["b"]})
    assert new_params(lg, {"trainer/max_epochs": 2, "seed": 3, "tags": "['b']"}) == {
        "tags": "['b']"
    }
    with caplog.at_level("INFO"):
        log_final_hparams([lg], resumed, {"val/loss": 0.4})
    params = lg.experiment.get_run(lg.run_id).data.params
    assert params == {"trainer/max_epochs": "1", "seed": "3", "tags": "['b']"}
    assert "MLflow keeps the first values of trainer/max_epochs" in caplog.text
    assert new_params(CSVLogger(tmp_path), {"a": 1}) == {"a": 1}  # other loggers take all


def test_image_grids_and_figures_reach_mlflow(tmp_path: Path) -> None:
    lg = _logger(tmp_path)
    trainer = SimpleNamespace(loggers=[lg], global_step=3, sanity_checking=False)
    assert has_image_logger(trainer)
    images = torch.zeros(4, 1, 5, 5)
    images[0, 0, 2, 2] = 1.0
    log_image_grid(trainer, "val/samples", images, nrow=2)
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    log_figure(trainer, "val/density", figure)
    found = _artifacts(lg)
    assert "figures/val/density/step_0000003.png" in found
    grids = [p for p in found if p.startswith("images/val~samples+step+3+") and p.endswith(".png")]
    assert len(grids) == 1
    local = lg.experiment.download_artifacts(lg.run_id, grids[0], str(tmp_path))
    pixels = torch.from_numpy(plt.imread(local))
    assert pixels.shape[:2] == (2 + 2 * 7, 2 + 2 * 7)  # make_grid: 2 x 2 of 5 + padding 2
    assert float(pixels[..., 0].max()) == 1.0 and float(pixels[4, 4, 0]) == 1.0
    assert not has_image_logger(SimpleNamespace(loggers=[], global_step=0, sanity_checking=False))


def test_the_run_directory_line_says_how_to_open_mlflow(capsys, in_run_a) -> None:
    for uri, line in (
        ("sqlite:///logs/mlflow.db", "mlflow ui --backend-store-uri sqlite:///logs/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ):
        report_run_dir(_cfg(mlflow={"_target_": ML, "tracking_uri": uri}))
        assert capsys.readouterr().out.splitlines() == [
            "run directory: /runs/a",
            f"open it in MLflow: {line}",
        ]


@pytest.mark.parametrize("keep", [None, 3])
def test_a_resumed_csv_logger_keeps_the_rows_up_to_the_checkpoint_step(
    tmp_path: Path, keep: int | None
) -> None:
    """Steps 0-5 were written before the interruption, the checkpoint is at step 3: the resumed
    logger keeps 0-3, drops 4-5 (the resumed part logs them again) and adds its own, new columns
    included. Without `keep_until_step` it is Lightning's logger, which starts a new file."""
    folder = tmp_path / "csv"
    folder.mkdir()
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "step", "train/loss"])
        writer.writeheader()
        writer.writerows({"epoch": 0, "step": s, "train/loss": 10 - s} for s in range(6))
    lg = ResumableCSVLogger(str(tmp_path), keep_until_step=keep)
    lg.log_metrics({"train/loss": 1.5, "val/loss": 2.5}, step=4)
    lg.save()
    with open(folder / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    old = [(int(r["step"]), float(r["train/loss"])) for r in rows if not r["val/loss"]]
    assert old == ([(s, 10.0 - s) for s in range(4)] if keep is not None else [])
    assert [(int(r["step"]), float(r["val/loss"])) for r in rows if r["val/loss"]] == [(4, 2.5)]
