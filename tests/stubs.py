"""Stubs for the step tests (tests/test_steps_*.py): networks whose outputs the test chooses, a
logger and a callback that record what a LightningModule logs and returns, in-memory loaders of
ready-made batches, and one builder per model with those stubs, the real loss plugins and a
real optimizer (lr 0 by default, so the parameters and thus the hand-computed values stay fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader

from src.losses.classification import CrossEntropy
from src.losses.elbo import ELBO
from src.losses.likelihoods import Bernoulli
from src.losses.margin import MarginLoss
from src.losses.multilabel import MultilabelCE
from src.losses.tagging import TagNLL
from src.models.base import BaseModule, SchedulerFactory
from src.models.classifier import Classifier
from src.models.components.latents import GaussianLatent
from src.models.crf_tagger import CRFTagger
from src.models.multi_item import MultiItemClassifier
from src.models.multilabel import MultilabelClassifier
from src.models.vae import VAE
from tests.conftest import quiet_trainer

Batch = tuple[torch.Tensor, ...]


class RecordingLogger(Logger):
    """Keeps every `log_metrics` call as (step, {name: value})."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))

    def series(self, name: str) -> list[tuple[int | None, float]]:
        """(step, value) of every row that holds `name`, in logging order."""
        return [(step, row[name]) for step, row in self.rows if name in row]


class StepOutputs(pl.Callback):
    """What `training_step`, `validation_step` and `test_step` returned, batch by batch."""

    def __init__(self) -> None:
        self.train: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []
        self.test: list[tuple[int, torch.Tensor]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self.train.append(outputs["loss"].detach().clone())

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.val.append(outputs.detach().clone())

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.test.append((dataloader_idx, outputs.detach().clone()))


def loader(batches: Sequence[Batch]) -> DataLoader:
    """The batches as they are, in order (no collation, no shuffling)."""
    return DataLoader(list(batches), batch_size=None)


def trainer(**kwargs: Any) -> pl.Trainer:
    """A one-epoch CPU Trainer: no sanity check, checkpoints, logger or progress bar."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
    }
    return quiet_trainer(**{**defaults, **kwargs})


def sgd(lr: float = 0.0) -> partial[torch.optim.SGD]:
    return partial(torch.optim.SGD, lr=lr)


class Shift(nn.Module):
    """A "net" whose inputs already are its outputs (class logits or scores), plus a bias that
    starts at zero (an optimizer needs a parameter)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ScoresAndPoses(Shift):
    """A capsule net stub: the inputs are the class scores; the poses (B, K, 2) are the scores
    and the class index, or None for the CNN baseline."""

    def __init__(self, n_classes: int, poses: bool = True) -> None:
        super().__init__(n_classes)
        self.poses = poses

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        scores = super().forward(x)
        if not self.poses:
            return scores, None
        index = torch.arange(scores.shape[1], dtype=scores.dtype).expand_as(scores)
        return scores, torch.stack([scores, index], -1)


class KeptClassDecoder(nn.Module):
    """A reconstruction decoder stub: the one-hot of the class it is told to keep; it records
    `keep` on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[torch.Tensor] = []

    def forward(self, poses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        self.kept.append(keep.clone())
        return nn.functional.one_hot(keep, poses.shape[1]).to(poses.dtype)


class LinearEncoder(nn.Module):
    """VAE encoder stub: params = W x.flatten(1) + b with the test's W and b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class RecordingDecoder(LinearEncoder):
    """VAE decoder stub: logits W z + b shaped as the images; it records every z it decodes."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, image_shape: Sequence[int]
    ) -> None:
        super().__init__(weight, bias)
        self.image_shape = tuple(image_shape)
        self.seen: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(z.detach().clone())
        return self.linear(z).view(-1, *self.image_shape)


class LookupEncoder(nn.Module):
    """Tagger encoder stub: token id -> the test's feature row (position-wise, no context)."""

    def __init__(self, vocab_size: int, table: torch.Tensor) -> None:
        super().__init__()
        if table.shape[0] != vocab_size:
            raise ValueError(f"table has {table.shape[0]} rows for {vocab_size} tokens")
        self.register_buffer("table", table.clone())
        self.out_dim = table.shape[1]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


IMAGE_SHAPE = (1, 2, 2)  # the VAE stubs' images: 4 pixels


def build_vae(
    latent: nn.Module | None = None,
    loss: ELBO | None = None,
    scheduler: SchedulerFactory | None = None,
    **kwargs: Any,
) -> VAE:
    """A VAE with linear stub encoder/decoder of seeded random weights (a recording decoder)."""
    latent = latent or GaussianLatent(dim=3)
    gen = torch.Generator().manual_seed(0)
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    enc_w = 0.5 * torch.randn(latent.param_dim, pixels, generator=gen)
    enc_b = 0.3 * torch.randn(latent.param_dim, generator=gen)
    dec_w = torch.randn(pixels, latent.dim, generator=gen)
    dec_b = 0.5 * torch.randn(pixels, generator=gen)

    def encoder(image_shape: Sequence[int], out_dim: int) -> nn.Module:
        return LinearEncoder(enc_w, enc_b)

    def decoder(image_shape: Sequence[int], in_dim: int) -> nn.Module:
        return RecordingDecoder(dec_w, dec_b, image_shape)

    return VAE(
        encoder,
        decoder,
        latent,
        loss or ELBO(Bernoulli()),
        sgd(),
        scheduler,
        image_shape=IMAGE_SHAPE,
        **kwargs,
    )


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
VOCAB = ["<pad>", "o", "p", "q", "l", "m", "junk"]


def tagger_table() -> torch.Tensor:
    """Emissions (vocab, tags) of the stub tagger: "o" O, "p" B-PER, "q" I-PER (B-PER second),
    "l" B-LOC, "m" I-LOC, 4 nats ahead; "junk" (for padding) I-LOC by 30 nats."""
    table = torch.zeros(len(VOCAB), len(TAGS))
    for token, tag in (("o", "O"), ("p", "B-PER"), ("q", "I-PER"), ("l", "B-LOC"), ("m", "I-LOC")):
        table[VOCAB.index(token), TAGS.index(tag)] = 4.0
    table[VOCAB.index("q"), TAGS.index("B-PER")] = 2.0
    table[VOCAB.index("junk")] = -15.0
    table[VOCAB.index("junk"), TAGS.index("I-LOC")] = 15.0
    return table


def build_tagger(
    head: str = "crf",
    reduction: str = "mean",
    tags: Sequence[str] = TAGS,
    scheme: str | None = "BIO",
    table: torch.Tensor | None = None,
    lr: float = 0.0,
    scheduler: SchedulerFactory | None = None,
) -> CRFTagger:
    """A tagger whose emissions are `table[token]` (the emission layer set to the identity) and
    whose CRF scores are small seeded random numbers."""
    table = tagger_table() if table is None else table
    model = CRFTagger(
        partial(LookupEncoder, table=table),
        TagNLL(reduction),
        sgd(lr),
        scheduler,
        head=head,
        vocab=VOCAB,
        tags=list(tags),
        scheme=scheme,
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.tagger.emit.weight.copy_(torch.eye(len(tags)))
        model.tagger.emit.bias.zero_()
        for p in model.tagger.head.parameters():
            p.copy_(0.2 * torch.rand(p.shape, generator=gen) - 0.1)
    return model


def build_classifier(lr: float = 0.0, scheduler: SchedulerFactory | None = None) -> Classifier:
    """3 classes, cross-entropy."""
    return Classifier(Shift(3), CrossEntropy(), sgd(lr), scheduler)


def build_multi_item(
    poses: bool = True, scheduler: SchedulerFactory | None = None
) -> MultiItemClassifier:
    """4 classes, the margin loss with reconstruction weight 0.5, the kept-class decoder."""
    return MultiItemClassifier(
        ScoresAndPoses(4, poses),
        MarginLoss(recon_weight=0.5),
        sgd(),
        scheduler,
        decoder=KeptClassDecoder(),
        n_classes=4,
    )


def build_multilabel(
    loss: nn.Module | None = None, scheduler: SchedulerFactory | None = None
) -> MultilabelClassifier:
    """4 classes, the multilabel softmax cross-entropy unless another loss is given."""
    return MultilabelClassifier(Shift(4), loss or MultilabelCE(), sgd(), scheduler, n_classes=4)


def stub_batches(model: BaseModule) -> list[Batch]:
    """Two small, uneven batches that fit each stub model (for the wiring-level base tests)."""
    gen = torch.Generator().manual_seed(3)
    if isinstance(model, VAE):
        return [
            (torch.randint(0, 2, (n, *IMAGE_SHAPE), generator=gen).float(), torch.zeros(n))
            for n in (3, 1)
        ]
    if isinstance(model, CRFTagger):
        tokens = torch.tensor([[2, 3, 1, 4], [1, 4, 5, 0]])
        tags = torch.tensor([[1, 2, 0, 3], [0, 3, 4, 0]])
        mask = tokens > 0
        return [(tokens, tags, mask), (tokens[:1], tags[:1], mask[:1])]
    k = len(model.net.bias)  # the classifiers' Shift stubs
    out = []
    for n in (3, 1):
        scores = torch.rand(n, k, generator=gen)
        out.append((scores, torch.randint(0, k, (n,), generator=gen)))
    return out
