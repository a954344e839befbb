"""The machinery every model shares (src/models/base.py), driven through real Trainer runs of stub
models: the epoch means of the training terms (size-weighted, one per epoch, reset between
epochs), the `train/<term>_step` values on the steps the logger writes, the evaluation noise of
`eval_generator`, the parameter groups and their `lr_scale` as the optimizer applies them, and
`configure_optimizers` with and without a scheduler, whose monitor must be a metric the model
logs. Expected numbers are computed by hand in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from src.models.base import BaseModule
from tests.stubs import (
    Batch,
    RecordingLogger,
    build_classifier,
    build_multi_item,
    build_multilabel,
    build_tagger,
    build_vae,
    loader,
    stub_batches,
    trainer,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*val_dataloader.*", "ignore:.*log_every_n_steps.*")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example -log softmax(logits)[label], by hand."""
    return logits.exp().sum(-1).log() - logits[torch.arange(len(labels)), labels]


def classification_batches(sizes: list[int], seed: int) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (2 * torch.randn(n, 3, generator=gen), torch.randint(0, 3, (n,), generator=gen))
        for n in sizes
    ]


class PerEpochBatches(pl.LightningDataModule):
    """Other training batches in every epoch (with reload_dataloaders_every_n_epochs=1)."""

    def __init__(self, epochs: list[list[Batch]]) -> None:
        super().__init__()
        self.epochs = epochs

    def train_dataloader(self) -> Any:
        return loader(self.epochs[self.trainer.current_epoch])


def test_training_terms_are_logged_once_per_epoch_as_that_epochs_size_weighted_mean() -> None:
    """Catches: a mean of batch means (uneven sizes 3, 1, 2), sums kept across epochs, a sum not
    divided, only the last batch, or a per-step log in place of the epoch mean."""
    epochs = [classification_batches([3, 1, 2], seed=0), classification_batches([1, 4], seed=1)]
    logger = RecordingLogger()
    fit = trainer(logger=logger, max_epochs=2, reload_dataloaders_every_n_epochs=1)
    fit.fit(build_classifier(), datamodule=PerEpochBatches(epochs))
    for name, term in (
        ("train/loss", cross_entropy),
        ("train/acc", lambda s, y: (s.argmax(-1) == y).float()),
    ):
        expected = []
        for batches in epochs:
            scores = torch.cat([s for s, _ in batches])
            labels = torch.cat([y for _, y in batches])
            expected.append(term(scores, labels).mean().item())
        assert [value for _, value in logger.series(name)] == pytest.approx(expected, abs=1e-6)


class StepMetrics(pl.Callback):
    """`train/loss_step` among the trainer's metrics after each batch (None before any)."""

    def __init__(self) -> None:
        self.seen: list[float | None] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        value = trainer.callback_metrics.get("train/loss_step")
        self.seen.append(None if value is None else value.item())


def test_step_values_are_the_batches_own_on_the_steps_the_logger_writes() -> None:
    """log_every_n_steps=2 over 5 batches: steps 1 and 3 carry batches 1 and 3, and the module
    logs nothing on the other steps (a log per step costs time). Catches an off-by-one step, a
    running mean in place of the batch's value, and a log on every step."""
    batches = classification_batches([2, 3, 1, 2, 2], seed=2)
    logger, spy = RecordingLogger(), StepMetrics()
    fit = trainer(logger=logger, callbacks=[spy], log_every_n_steps=2)
    fit.fit(build_classifier(), loader(batches))
    loss_1, loss_3 = (cross_entropy(*batches[i]).mean().item() for i in (1, 3))
    got = logger.series("train/loss_step")
    assert [step for step, _ in got] == [1, 3]
    assert [value for _, value in got] == pytest.approx([loss_1, loss_3])
    assert spy.seen[0] is None
    assert spy.seen[1:] == pytest.approx([loss_1, loss_1, loss_3, loss_3])


def test_eval_generator_is_per_batch_per_seed_and_the_same_on_every_run() -> None:
    """Catches noise that is the same for every batch, ignores eval_seed, or is not reproducible."""

    def draw(module: BaseModule, batch_idx: int) -> torch.Tensor:
        return torch.randn(5, generator=module.eval_generator(batch_idx))

    first, again, other_seed = build_classifier(), build_classifier(), build_classifier()
    other_seed.eval_seed = 1
    assert torch.equal(draw(first, 0), draw(again, 0))
    assert torch.equal(draw(first, 3), draw(first, 3))
    assert not torch.equal(draw(first, 0), draw(first, 1))
    assert not torch.equal(draw(first, 0), draw(other_seed, 0))
    assert not torch.equal(draw(first, 1), draw(other_seed, 0))


class StepRecorder(pl.Callback):
    """Parameters and gradients just before the first optimizer step, parameters just after."""

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any
    ) -> None:
        self.before = {n: p.detach().clone() for n, p in module.named_parameters()}
        self.grad = {n: p.grad.detach().clone() for n, p in module.named_parameters()}

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self.after = {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize(
    ("build", "scale"),
    [
        (
            lambda: build_tagger("crf", lr=0.01),
            lambda name: 100.0 if name.startswith("tagger.head.") else 1,
        ),
        (lambda: build_tagger("softmax", lr=0.01), lambda name: 1.0),
        (lambda: build_classifier(lr=0.01), lambda name: 1.0),
    ],
    ids=["crf-tagger", "softmax-tagger", "classifier"],
)
def test_every_parameter_moves_by_its_groups_scaled_learning_rate(
    build: Callable[[], BaseModule], scale: Callable[[str], float]
) -> None:
    """One SGD step: p_new = p - lr * lr_scale * grad for each parameter (the CRF's 100x).
    Catches lr_scale ignored or applied to the wrong group, and a parameter left out of (or
    counted twice in) the groups."""
    model = build()
    batches = stub_batches(model)
    recorder = StepRecorder()
    trainer(max_steps=1, callbacks=[recorder]).fit(model, loader(batches))
    names = [n for n, _ in model.named_parameters()]
    moved = [n for n in names if recorder.grad[n].abs().max() > 1e-4]
    assert moved == names  # every parameter has a gradient worth checking
    for name in names:
        expected = recorder.before[name] - 0.01 * scale(name) * recorder.grad[name]
        torch.testing.assert_close(recorder.after[name], expected, msg=name)


def test_a_scheduler_steps_once_per_epoch_on_every_scaled_group() -> None:
    """StepLR(gamma 1/2) over 2 epochs of 2 batches: every group's (scaled) rate / 4, not / 16
    (stepped per batch) and not unscaled. Catches a wrong interval or scaling after the
    scheduler took its base rates."""
    step_lr = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    model = build_tagger("crf", lr=0.01, scheduler=step_lr)
    fit = trainer(max_epochs=2)
    fit.fit(model, loader(stub_batches(model)))
    assert [g["lr"] for g in fit.optimizers[0].param_groups] == pytest.approx([0.0025, 0.25])


def test_without_a_scheduler_the_scaled_rates_stay() -> None:
    model = build_tagger("crf", lr=0.01)
    fit = trainer(max_epochs=2)
    fit.fit(model, loader(stub_batches(model)))
    assert fit.lr_scheduler_configs == []
    assert [g["lr"] for g in fit.optimizers[0].param_groups] == pytest.approx([0.01, 1.0])


@pytest.mark.parametrize(
    "build",
    [build_vae, build_tagger, build_classifier, build_multi_item, build_multilabel],
    ids=["vae", "tagger", "classifier", "multi_item", "multilabel"],
)
def test_a_plateau_scheduler_reads_the_metric_the_model_monitors(
    build: Callable[..., BaseModule],
) -> None:
    """After one epoch ReduceLROnPlateau's best is the logged `monitor` (val/nelbo, val/f1,
    val/acc, val/exact). Catches a monitor name the model does not log, or the wrong metric
    handed to the scheduler."""
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0)
    model = build(scheduler=plateau)
    batches = stub_batches(model)
    fit = trainer()
    fit.fit(model, loader(batches), loader(batches[::-1]))
    scheduler = fit.lr_scheduler_configs[0].scheduler
    assert fit.lr_scheduler_configs[0].monitor == model.monitor
    assert scheduler.best == pytest.approx(fit.callback_metrics[model.monitor].item())
