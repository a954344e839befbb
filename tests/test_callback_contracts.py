"""Small contracts of the callbacks and helpers that the sampled mutation run found unchecked:
the image callbacks refuse a model without their protocol, the divergence guard reads an empty
energy, exact resume stores the epoch's sums only mid-epoch, None in hparams is the string
"None", and the atomic checkpoint writer names what it refuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from src.callbacks.divergence_guard import DivergenceGuard
from src.callbacks.image_evaluation import (
    PairsFigureCallback,
    ReconstructionsCallback,
    RoutingMapsCallback,
    SampleGridCallback,
)
from src.callbacks.resumable_training import ResumableTraining
from src.data.resumable import ResumableLoader
from src.utils.checkpoint_io import AtomicCheckpointIO
from src.utils.errors import UserError
from src.utils.run import flat_hparams


@pytest.mark.parametrize(
    ("callback", "method"),
    [
        (SampleGridCallback(), "sample"),
        (ReconstructionsCallback(), "reconstruct"),
        (RoutingMapsCallback(), "routing"),
        (PairsFigureCallback(), "class_scores"),
    ],
)
def test_an_image_callback_refuses_a_model_without_its_protocol(callback, method: str) -> None:
    bare = torch.nn.Linear(1, 1)
    with pytest.raises(UserError, match=method):
        callback.setup(None, bare, "fit")
    offering = torch.nn.Linear(1, 1)
    setattr(offering, method, lambda *a, **k: None)
    callback.setup(None, offering, "fit")  # the protocol is there: no refusal


def test_the_divergence_guard_reads_an_empty_energy_as_zero() -> None:
    module = SimpleNamespace(last_energies={"energy": torch.empty(0)})
    DivergenceGuard().on_before_optimizer_step(None, module, SimpleNamespace(param_groups=[]))


def _loader(trained: int, batches: int) -> ResumableLoader:
    loader = ResumableLoader.__new__(ResumableLoader)
    loader.trained, loader.epoch_batches = trained, batches
    return loader


@pytest.mark.parametrize(
    ("loader", "stored"),
    [(_loader(3, 10), True), (_loader(10, 10), False), ([1, 2], False)],
)
def test_the_epochs_sums_go_into_a_checkpoint_only_mid_epoch(loader, stored: bool) -> None:
    module = SimpleNamespace(epoch_sums=lambda: {"loss": 1.5})
    checkpoint: dict = {}
    ResumableTraining().on_save_checkpoint(SimpleNamespace(train_dataloader=loader), module,
                                           checkpoint)  # fmt: skip
    assert checkpoint == ({"train_epoch_sums": {"loss": 1.5}} if stored else {})


def test_none_in_the_hparams_is_the_string_none() -> None:
    flat = flat_hparams(OmegaConf.create({"model": {"b": None, "c": 1}, "other": None}))
    assert flat == {"model/b": "None", "model/c": 1}


def test_the_atomic_writer_refuses_storage_options_by_name(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"^AtomicCheckpointIO takes no storage_options$"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"a": 1})
