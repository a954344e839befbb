"""W&B offline (`conf/logger/wandb.yaml`, `src/utils/tracking.py`, `src/utils/images.py`): a real
offline run in a temporary folder, read back from the file W&B writes. The end-to-end train and
resume through `train.py logger=many` is in test_tracking_server.py (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt
import pytest
import torch
import wandb
from omegaconf import OmegaConf

from src.train import isolated_job
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure, log_image_grid
from src.utils.run import log_final_hparams, report_run_dir
from src.utils.tracking import (
    WANDB_RUN_ID,
    QuietWandbLogger,
    continue_trackers,
    record_trackers,
    require_logger_packages,
)
from tests.wandb_offline import read_run

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "logger" / "wandb.yaml"


def _node() -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG).wandb)


def test_the_wandb_config_is_offline_and_asks_for_its_extra(monkeypatch) -> None:
    node = _node()
    assert node["_target_"] == "src.utils.tracking.QuietWandbLogger"
    assert node["offline"] is True and node["log_model"] is False
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(UserError) as err:
        require_logger_packages(OmegaConf.create({"logger": {"wandb": node}}))
    assert "\n" not in str(err.value) and "pip install -e '.[wandb]'" in str(err.value)


def test_continue_trackers_names_the_wandb_run_after_its_directory_and_resumes_its_id(
    tmp_path: Path,
) -> None:
    out = tmp_path / "2026-12-02_run"
    out.mkdir()
    cfg = OmegaConf.create({"logger": {"wandb": _node()}})
    continue_trackers(cfg, str(out), None)
    assert cfg.logger.wandb.name == out.name
    assert cfg.logger.wandb.get("id") is None and cfg.logger.wandb.get("resume") is None
    (out / WANDB_RUN_ID).write_text("abc123xy\n")
    continue_trackers(cfg, str(out), 8)
    assert (cfg.logger.wandb.id, cfg.logger.wandb.resume) == ("abc123xy", "allow")
    given = OmegaConf.create({"logger": {"wandb": {**_node(), "id": "mine", "name": "named"}}})
    continue_trackers(given, str(out), 8)
    assert (given.logger.wandb.id, given.logger.wandb.name) == ("mine", "named")


def test_an_offline_run_holds_its_metrics_config_and_images_and_a_failed_job_ends_it(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """One offline W&B run, recorded in its run directory; metrics, an image grid and a figure at
    their steps; the config; a job that fails ends the run with code 1, so
    the next job of a multirun (same process) starts its own."""
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    lg = QuietWandbLogger(name="run-a", save_dir=str(tmp_path), offline=True, project="tracking")
    with pytest.raises(RuntimeError, match="diverged"), isolated_job():
        record_trackers([lg], str(tmp_path))
        trainer = SimpleNamespace(loggers=[lg], global_step=3, sanity_checking=False)
        assert has_image_logger(trainer)
        for step in range(3):
            lg.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
        log_image_grid(trainer, "val/samples", torch.ones(4, 1, 5, 5), nrow=2)
        figure, axes = plt.subplots()
        axes.plot([0, 1], [1, 0])
        log_figure(trainer, "val/density", figure)
        log_final_hparams([lg], OmegaConf.create({"model": {"lr": 0.5}, "seed": 7}), {"a": 2.0})
        raise RuntimeError("diverged")
    assert wandb.run is None
    assert "anonymous" not in capsys.readouterr().err
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_run(folder)
    assert run["id"] == (tmp_path / WANDB_RUN_ID).read_text().strip() == lg.version
    assert (run["name"], run["project"], run["exit_code"]) == ("run-a", "tracking", 1)
    assert {"model/lr": 0.5, "seed": 7}.items() <= run["config"].items()
    losses = [
        (h["trainer/global_step"], h["train/loss"]) for h in run["history"] if "train/loss" in h
    ]
    assert losses == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    media = sorted((h["trainer/global_step"], k) for h in run["history"] for k in h if "_type" in k)
    assert media == [(3, "val/density/_type"), (3, "val/samples/_type")]
    grids = list((folder / "files" / "media" / "images" / "val").glob("samples_*.png"))
    assert len(grids) == 1
    pixels = plt.imread(grids[0])
    assert pixels.shape[:2] == (2 + 2 * 7, 2 + 2 * 7) and float(pixels[4, 4, 0]) == 1.0
    assert list((folder / "files" / "media" / "images" / "val").glob("density_*.png"))


def test_the_run_directory_line_says_how_to_upload_an_offline_run(capsys, in_run_a) -> None:
    report_run_dir(OmegaConf.create({"logger": {"wandb": _node()}}))
    assert capsys.readouterr().out.splitlines() == [
        "run directory: /runs/a",
        "upload it to W&B: wandb sync /runs/a/wandb/offline-run-*",
    ]
    report_run_dir(OmegaConf.create({"logger": {"wandb": {**_node(), "offline": False}}}))
    assert capsys.readouterr().out.splitlines() == ["run directory: /runs/a"]
