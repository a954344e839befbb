"""Bad input: short clear errors, a non-zero exit code, and earlier runs left alone."""

from __future__ import annotations

import gzip
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from src.data.image_datamodule import FILES, ImageDataModule, find_idx_dir
from src.models.components.latents import GaussianLatent
from src.models.components.nets import MLPDecoder, MLPEncoder
from src.models.vae import VAE
from src.train import build
from src.utils.config import check_groups, check_types
from src.utils.errors import UserError
from tests.conftest import FASHION_DIR, needs_fashion, run_script, write_fake_mnist


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    """A previous run directory under the log dir the failing commands will use."""
    run = tmp_path / "logs" / "train" / "runs" / "2026-01-01_00-00-00_000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / "metrics.json").write_text("{}")
    return run


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _fails_clearly(result, *phrases: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    for phrase in phrases:
        assert phrase in text, (phrase, text[-2000:])
    return text


@pytest.mark.parametrize(
    ("override", "listed"),
    [("model=nope", "vae_gumbel"), ("data=nope", "fashion_mnist"), ("loss=nope", "bernoulli")],
)
def test_unknown_option_lists_the_available_ones(
    override: str, listed: str, tmp_path: Path, earlier_run: Path
) -> None:
    before = _snapshot(earlier_run)
    result = run_script("train.py", override, f"paths.log_dir={tmp_path}/logs")
    _fails_clearly(result, "Available options", listed)
    assert _snapshot(earlier_run) == before


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    result = run_script("train.py", "model.latent.dimm=3", f"paths.log_dir={tmp_path}/logs")
    _fails_clearly(result, "dimm")


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("data.batch_size=1.5", "data.batch_size=1.5 has the wrong type"),
        ("loss.kl=exact", "loss.kl='exact' has the wrong type"),
        ("model.encoder.hidden=[8,x]", "expects a list of ints"),
        ("model.optimizer.lr=fast", "expects a float or Tensor"),
        ("trainer.max_epochs=many", "trainer.max_epochs='many' has the wrong type"),
    ],
)
def test_wrong_typed_override_is_caught_before_building(
    make_cfg, override: str, phrase: str
) -> None:
    cfg = make_cfg(override)
    with pytest.raises(UserError, match=re.escape(phrase)):
        check_groups(cfg, ("data", "loss", "model", "trainer"))


@pytest.mark.parametrize(
    "good",
    [
        "trainer.devices=auto",
        "trainer.limit_train_batches=0.5",
        "trainer.precision=16-mixed",
        "trainer.gradient_clip_val=1",
    ],
)
def test_well_typed_overrides_pass(make_cfg, good: str) -> None:
    cfg = make_cfg(good)
    check_groups(cfg, ("data", "loss", "model", "trainer"))


def test_wrong_typed_override_exits_2(tmp_path: Path, earlier_run: Path) -> None:
    before = _snapshot(earlier_run)
    result = run_script("train.py", "model.latent.dim=abc", f"paths.log_dir={tmp_path}/logs")
    _fails_clearly(result, "model.latent.dim='abc' has the wrong type", "expects an int")
    assert result.returncode == 2
    assert _snapshot(earlier_run) == before


def test_missing_data_names_both_fixes(tmp_path: Path, earlier_run: Path) -> None:
    if Path("/usr/share/datasets/mnist").is_dir():
        pytest.skip("MNIST is installed system-wide here")
    before = _snapshot(earlier_run)
    result = run_script(
        "train.py",
        "data=mnist",
        f"data.data_dir={tmp_path}/empty",
        f"paths.log_dir={tmp_path}/logs",
        "extras.print_config=false",
    )
    _fails_clearly(result, "apt-get install dataset-mnist", "data.download=true")
    assert result.returncode == 2 and _snapshot(earlier_run) == before


def test_corrupt_data_file(tmp_path: Path, earlier_run: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")
    images = data / f"{FILES['train'][0]}.gz"
    raw = gzip.decompress(images.read_bytes())
    with gzip.open(images, "wb") as f:
        f.write(raw[: len(raw) // 2])
    before = _snapshot(earlier_run)
    result = run_script(
        "train.py",
        "data=mnist",
        f"data.data_dir={data}",
        f"paths.log_dir={tmp_path}/logs",
        "extras.print_config=false",
    )
    _fails_clearly(result, "truncated or corrupt")
    assert result.returncode == 2 and _snapshot(earlier_run) == before


@pytest.mark.parametrize("script", ["eval.py", "scripts/sample.py"])
def test_missing_and_corrupt_checkpoints(script: str, tmp_path: Path, earlier_run: Path) -> None:
    before = _snapshot(earlier_run)
    extra = [f"paths.log_dir={tmp_path}/logs"] if script == "eval.py" else []
    result = run_script(script, f"ckpt_path={tmp_path}/nope.ckpt", *extra)
    _fails_clearly(result, "does not exist")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    result = run_script(script, f"ckpt_path={bad}", *extra)
    _fails_clearly(result, "not a readable checkpoint")
    assert result.returncode == 2 and _snapshot(earlier_run) == before


def test_train_refuses_a_missing_resume_checkpoint(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        f"ckpt_path={tmp_path}/none.ckpt",
        f"paths.log_dir={tmp_path}/logs",
        "extras.print_config=false",
    )
    _fails_clearly(result, "does not exist")


class NotAnELBO(nn.MSELoss):
    task = "tagging"


def test_a_loss_that_does_not_fit_the_model_is_refused() -> None:
    with pytest.raises(UserError, match="does not fit VAE, which needs a 'vae' loss"):
        VAE(
            encoder=partial(MLPEncoder),
            decoder=partial(MLPDecoder),
            latent=GaussianLatent(2),
            loss=NotAnELBO(),
            optimizer=partial(torch.optim.Adam),
        )


@needs_fashion
def test_the_system_data_is_read_in_place(tmp_path: Path) -> None:
    """The Debian package is read where it is: nothing is copied (nor downloaded) into data_dir.
    Catches: a prepare_data or setup that caches the files in data_dir or beside it."""
    data_dir = tmp_path / "data"
    dm = ImageDataModule(name="fashion_mnist", data_dir=str(data_dir), val_size=5000)
    dm.prepare_data()
    dm.setup()
    assert find_idx_dir("fashion_mnist", data_dir) == FASHION_DIR
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 60_000
    assert list(tmp_path.iterdir()) == []


def test_a_key_its_class_does_not_take_is_named(make_cfg) -> None:
    cfg = make_cfg("data=toy2d", "+data.binarize=true")
    with pytest.raises(UserError, match=r"data.binarize is not a parameter of .*Toy2dDataModule"):
        check_types(cfg.data, "data")


def test_a_model_and_data_that_do_not_fit_together_are_named(make_cfg) -> None:
    message = (
        "EBM reads examples of shape [2], but ImageDataModule gives [1, 28, 28]: choose "
        "data=<a config in conf/data with that shape> (data=toy2d for 2-d points), or an "
        "experiment that pairs this model with its data (conf/experiment)."
    )
    with pytest.raises(UserError, match=re.escape(message)):
        build(make_cfg("model=ebm_2d"))
    with pytest.raises(UserError, match=re.escape("VAE reads examples of shape [1, 28, 28], but")):
        build(make_cfg("model=vae", "data=toy2d"))
    with pytest.raises(UserError, match=re.escape("gives [1, 56, 28]")):
        build(make_cfg("model=vae", "data.pairs_train=true"))
    build(make_cfg("model=multilabel_cnn", "data.pairs_train=true"))  # reads any image size


@pytest.mark.parametrize(
    ("overrides", "wanted"),
    [
        (["model=classifier", "model.net.in_channels=3"], "[3, 28, 28]"),
        (["model=classifier", "model.net.image_size=32"], "[1, 32, 32]"),
        (["model=capsnet", "model.net.image_shape=[1,32,32]", "loss=margin"], "[1, 32, 32]"),
        (["model=capsnet_small", "model.net.in_channels=3", "loss=margin"], "[3, any, any]"),
        (["model=cnn_sigmoid", "model.net.in_channels=3", "loss=margin"], "[3, any, any]"),
        (["model=capsnet", "data.pairs_train=true", "loss=margin"], "[1, 28, 28]"),
    ],
)
def test_a_classifier_whose_net_does_not_fit_the_images_is_named(
    make_cfg, overrides: list[str], wanted: str
) -> None:
    """The classifiers read the shape their network declares (a None side: any size)."""
    name = "Classifier" if overrides[0] == "model=classifier" else "MultiItemClassifier"
    with pytest.raises(UserError, match=re.escape(f"{name} reads examples of shape {wanted}, but")):
        build(make_cfg(*overrides))


def test_classifiers_that_fit_their_images_build(make_cfg) -> None:
    """Any size where the network pools globally; the given size where it does not."""
    build(make_cfg("model=classifier"))
    build(make_cfg("model=capsnet", "loss=margin"))
    for model in ("capsnet_small", "cnn_sigmoid"):
        build(make_cfg(f"model={model}", "data.pairs_train=true", "loss=margin"))
