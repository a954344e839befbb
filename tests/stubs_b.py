"""Stub networks with outputs chosen by the test, and a minimal harness to run a LightningModule's
steps on known batches: fixed in-memory loaders and data module, a quiet CPU Trainer, and a
callback that keeps, for every batch, the inputs a recording stub saw in it (and, in evaluation,
what the step returned). Used by the step tests of the adversarial, energy and NCE models
(tests/test_steps_*.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from src.data.toy_distributions import Toy2dDistribution
from src.models.components.gan_nets import Generator
from tests.conftest import quiet_trainer

Batch = tuple[torch.Tensor, torch.Tensor]


class Recording(nn.Module):
    """A module that keeps a copy of the input of each of its calls in `calls`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def record(self, x: torch.Tensor) -> None:
        self.calls.append(x.detach().clone())


class Affine(Recording):
    """f(x) = w . x + c over the last axis, (...,) or (..., 1) with `keepdim`; w and c are
    parameters."""

    def __init__(self, w: Sequence[float], c: float = 0.0, keepdim: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.c = nn.Parameter(torch.tensor(float(c)))
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.record(x)
        out = x @ self.w + self.c
        return out.unsqueeze(-1) if self.keepdim else out


class HalfSquare(nn.Module):
    """D(x) = s |x|^2 / 2 with s = 1 a parameter: grad_x D = x, so the gradient norm at a point
    is its length."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.s * x.flatten(1).square().sum(1)


class AffineGenerator(Generator):
    """G(z) = z A^T + b from N(0, I) codes: A is fixed (a buffer), b is the only parameter. The
    codes of every call are kept in `calls`."""

    def __init__(self, a: Sequence[Sequence[float]], b: Sequence[float]) -> None:
        a_tensor = torch.tensor(a, dtype=torch.float32)
        super().__init__(latent_dim=a_tensor.shape[1], code="normal")
        self.register_buffer("a", a_tensor)
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float32))
        self.calls: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls.append(z.detach().clone())
        return z @ self.a.T + self.b


def loader(batches: Sequence[Batch]) -> DataLoader:
    """Yields the given (x, y) batches as they are, in order."""
    return DataLoader(list(batches), batch_size=None)


def batch(x: torch.Tensor) -> Batch:
    """(x, zero labels)."""
    return x, torch.zeros(len(x), dtype=torch.long)


def shared_rows(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many rows of `b` are also rows of `a` (exactly)."""
    return int((b[:, None] == a[None]).flatten(2).all(-1).any(1).sum())


def trainer(**kwargs: Any) -> pl.Trainer:
    """A quiet CPU Trainer for one epoch, no sanity check, no checkpoints, gradients in
    evaluation; `kwargs` as Trainer's."""
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "inference_mode": False,
        "log_every_n_steps": 1,
    }
    return quiet_trainer(**{**defaults, **kwargs})


def metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The trainer's callback metrics as floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


class StepRecorder(pl.Callback):
    """For each training, validation or test batch: `inputs[i]` the inputs `stub` recorded during
    it (`stub.calls`, emptied when the batch starts) and, in evaluation, `outputs[i]` what the step
    returned."""

    def __init__(self, stub: Recording | AffineGenerator) -> None:
        self.stub = stub
        self.outputs: list[torch.Tensor] = []
        self.inputs: list[list[torch.Tensor]] = []

    def _start(self) -> None:
        self.stub.calls.clear()

    def _end(self) -> None:
        self.inputs.append(list(self.stub.calls))

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._start()

    def on_validation_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._start()

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._start()

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._end()

    def on_validation_batch_end(self, trainer, pl_module, outputs, *args: Any, **kw: Any) -> None:
        self._end()
        self.outputs.append(outputs.detach().clone())

    def on_test_batch_end(self, trainer, pl_module, outputs, *args: Any, **kw: Any) -> None:
        self._end()
        self.outputs.append(outputs.detach().clone())


def evaluate(
    model: pl.LightningModule,
    stage: str,
    stub: Recording | AffineGenerator,
    batches: Sequence[torch.Tensor] = (),
    datamodule: pl.LightningDataModule | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[dict[str, float], StepRecorder]:
    """Validate (`stage` "val") or test `model` on `batches` of points (zero labels) or on
    `datamodule`'s, with `callbacks`; the logged metrics and the record of `stub`'s inputs per
    batch."""
    recorder = StepRecorder(stub)
    run = trainer(callbacks=[recorder, *callbacks])
    evaluation = run.validate if stage == "val" else run.test
    if datamodule is None:
        evaluation(model, dataloaders=loader([batch(x) for x in batches]), verbose=False)
    else:
        evaluation(model, datamodule=datamodule, verbose=False)
    return metrics(run), recorder


class ToyBatches(pl.LightningDataModule):
    """A data module over fixed batches of 2-d points with a known true `distribution`;
    `train_examples()`, the training batches' points together, is what models fit statistics to."""

    def __init__(
        self, distribution: Toy2dDistribution, train: Sequence[Batch], val: Sequence[Batch] = ()
    ) -> None:
        super().__init__()
        self.distribution = distribution
        self.train, self.val = list(train), list(val)

    def train_examples(self) -> torch.Tensor:
        return torch.cat([x for x, _ in self.train])

    def train_dataloader(self) -> DataLoader:
        return loader(self.train)

    def val_dataloader(self) -> DataLoader:
        return loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return loader(self.val)
