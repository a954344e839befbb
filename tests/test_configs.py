"""Every config that should compose does, and builds the objects it names."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from omegaconf import OmegaConf

from src.models.vae import VAE
from src.train import build, resolve_monitor
from src.utils.errors import UserError
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers
from tests.conftest import ROOT, data_for

MODELS = sorted(p.stem for p in (ROOT / "conf/model").glob("vae*.yaml"))
LOSSES = sorted(
    p.stem for p in (ROOT / "conf/loss").glob("*.yaml") if "src.losses.elbo.ELBO" in p.read_text()
)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def test_the_groups_have_the_expected_options() -> None:
    assert {"vae", "vae_2d", "vae_conv", "vae_gumbel"} <= set(MODELS)
    assert {"bernoulli", "gaussian", "continuous_bernoulli"} <= set(LOSSES)
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= set(_options("trainer"))
    assert {"tensorboard", "csv"} <= set(_options("logger"))
    assert {"fdr", "overfit", "limit", "profiler"} <= set(_options("debug"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("data", ["fashion_mnist", "mnist"])
def test_vae_loss_data_combinations_build(make_cfg, model: str, loss: str, data: str) -> None:
    cfg = make_cfg(f"model={model}", f"loss={loss}", f"data={data}")
    datamodule, module = build(cfg)
    assert isinstance(module, VAE) and datamodule.name == data
    assert type(module.loss.likelihood).__name__.lower() == loss.replace("_", "")
    assert datamodule.hparams.binarize is False  # experiments binarise, model configs do not
    assert module.hparams_initial.keys() >= {"image_shape", "iwae_samples"}


@pytest.mark.parametrize("option", _options("trainer"))
def test_trainer_configs_compose(make_cfg, option: str) -> None:
    cfg = make_cfg(f"trainer={option}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if option in ("default", "cpu", "ddp_sim"):
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
        assert isinstance(trainer, pl.Trainer)
        assert trainer.num_devices == (2 if option == "ddp_sim" else 1)


@pytest.mark.parametrize("logger", _options("logger"))
def test_logger_configs_build(make_cfg, logger: str) -> None:
    assert instantiate_loggers(make_cfg(f"logger={logger}").logger)


def test_callbacks_watch_the_models_metric(make_cfg) -> None:
    cfg = make_cfg("model=vae_gumbel")
    assert (cfg.monitor, cfg.monitor_mode) == ("model", "model")
    build(cfg)
    callbacks = instantiate_callbacks(cfg.callbacks)
    checkpoint = next(c for c in callbacks if isinstance(c, ModelCheckpoint))
    stopping = next(c for c in callbacks if isinstance(c, EarlyStopping))
    assert checkpoint.monitor == stopping.monitor == "val/nelbo"
    # the callbacks writing last.ckpt share it (with a version counter the second would write
    # last-v1.ckpt and last.ckpt would not always hold the latest weights)
    writers = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.save_last]
    assert len(writers) == 2 and not any(c._enable_version_counter for c in writers)
    # callbacks=none leaves only the measures and pictures the model config switches on
    left = instantiate_callbacks(make_cfg("callbacks=none").callbacks)
    assert [type(c).__name__ for c in left] == ["SampleGridCallback", "ReconstructionsCallback"]
    assert all(c.evaluation for c in left)


@pytest.mark.parametrize("debug", _options("debug"))
def test_debug_presets_compose(make_cfg, debug: str) -> None:
    cfg = make_cfg(f"debug={debug}")
    assert cfg.task_name == "debug" and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_compose(make_cfg, experiment: str) -> None:
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.tags and cfg.seed is not None
    build(cfg)


def test_eval_config_composes(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(f"ckpt_path={tmp_path}/x.ckpt", config_name="eval")
    assert list(cfg.stages) == ["validate", "test"]


def test_toy2d_data_config_builds(make_cfg) -> None:
    cfg = make_cfg("data=toy2d", "data.name=rings", "data.n_train=1000")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    x, labels = next(iter(datamodule.train_dataloader()))
    assert x.shape == (256, 2) and labels.shape == (256,)
    assert datamodule.distribution.name == "rings"


@pytest.mark.parametrize("model", [m for m in _options("model") if m != "crf_tagger"])
def test_every_model_config_builds_with_its_loss(make_cfg, model: str) -> None:
    """Each model config picks a loss that fits it (the model checks the loss's task)."""
    cfg = make_cfg(f"model={model}", *data_for(model))
    _, module = build(cfg)
    assert module.loss.task == module.loss_task
    assert cfg.monitor.split("/")[0] == "val" and cfg.monitor_mode in ("min", "max")


@pytest.mark.parametrize("model", _options("model"))
def test_a_model_config_sets_nothing_outside_its_model(make_cfg, model: str) -> None:
    """Only the loss and the callbacks that read the model may differ from the defaults' run:
    the data, the trainer and the monitor are the experiment's (or the command line's)."""
    default, chosen = make_cfg(), make_cfg(f"model={model}")
    for key in default:
        stamped = ("run_dir", "config_subdir", "sweep_dir")  # (time stamps)
        if key not in ("model", "loss", "callbacks", *stamped):
            assert chosen[key] == default[key], key
    assert set(chosen) == set(default)
    kept = {k: v for k, v in default.callbacks.items() if k in chosen.callbacks}
    assert kept == {k: v for k, v in chosen.callbacks.items() if k in default.callbacks}


class _Own:
    monitor, monitor_mode = "val/f1", "max"


@pytest.mark.parametrize(
    ("monitor", "mode", "resolved"),
    [
        ("model", "model", ("val/f1", "max")),
        ("val/f1", "model", ("val/f1", "max")),
        ("val/loss", "min", ("val/loss", "min")),
        (None, "model", (None, "min")),
    ],
)
def test_monitor_model_is_the_models_own_metric(monitor, mode, resolved) -> None:
    cfg, model = OmegaConf.create({"monitor": monitor, "monitor_mode": mode}), _Own()
    resolve_monitor(cfg, model)
    assert (cfg.monitor, cfg.monitor_mode) == resolved
    assert model.monitor == (resolved[0] or "val/f1")  # the plateau scheduler follows it


def test_monitor_settings_that_cannot_be_resolved_are_one_line() -> None:
    def resolve(monitor: str | None, mode: str, model: object) -> None:
        resolve_monitor(OmegaConf.create({"monitor": monitor, "monitor_mode": mode}), model)

    with pytest.raises(
        UserError, match=r"^monitor=val/acc is not _Own's own metric \(val/f1\), so"
    ):
        resolve("val/acc", "model", _Own())
    with pytest.raises(UserError, match=r"^monitor=model, but object names no metric of its own"):
        resolve("model", "model", object())
    with pytest.raises(UserError, match=r"^monitor_mode='up': choose min, max or model\.$"):
        resolve("val/f1", "up", _Own())
