"""Pictures of an image model, written once for every model that offers the protocol:

    callbacks:
      sample_grid:
        _target_: src.callbacks.image_evaluation.SampleGridCallback
      latent_space:
        _target_: src.callbacks.image_evaluation.LatentSpaceCallback

- `SampleGridCallback`: `<stage>/samples`, a grid of `n` images from `sample(n, generator)` with
  the generator seeded `seed`, the same noise every epoch (VAE, WGAN-GP, EBM).
- `ReconstructionsCallback`: `val/reconstructions`, the first `n` images of validation batch 0
  above what `reconstruct(x, generator)` makes of them (VAE, capsule nets with a decoder).
- `RoutingMapsCallback`: `val/routing_coefficients`, for up to `n` images of validation batch 0
  the image and one map per class of the routing coefficients c_ij by position, from the model's
  `routing(x)` (capsule nets).
- `PairsFigureCallback`: `test/pairs`, the first `n` two-item test images titled with their top-2
  classes and scores, from `class_scores(x)` on the data module's second test loader.
- `LatentSpaceCallback`: for a model whose `encode(x)` gives 2-d codes (the posterior means of
  a 2-d Gaussian latent) and whose `decode(z)` gives images: `val/latent_scatter`, the codes of
  the validation images (up to `n_codes`) coloured by class, and `val/latent_manifold`, the
  decodings of the codes at the normal quantiles (Kingma & Welling, fig. 4;
  kexue.fm/archives/5253).

Both draw at the end of validation (and, for the samples, of testing) when a TensorBoard logger
is attached, never in the sanity check, and refuse in one line a model without the protocol.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from src.evaluation.figures import (
    coupling_rows,
    latent_scatter_figure,
    manifold_codes,
    pairs_figure,
)
from src.utils.bounds import PositiveInt
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure, log_image_grid


def _needs(pl_module: pl.LightningModule, name: str, *methods: str) -> None:
    missing = [m for m in methods if not callable(getattr(pl_module, m, None))]
    if missing:
        raise UserError(
            f"callbacks.{name} needs {' and '.join(f'{m}()' for m in missing)}, which "
            f"{type(pl_module).__name__} does not offer: remove the callback."
        )


class SampleGridCallback(pl.Callback):
    evaluation = True  # eval.py evaluates a checkpoint with it too

    def __init__(self, n: PositiveInt = 64, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        _needs(pl_module, "sample_grid", "sample")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not has_image_logger(trainer):
            return
        noise = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        images = pl_module.sample(self.n, noise)
        if images.dim() != 4:
            raise UserError(
                f"callbacks.sample_grid shows images; {type(pl_module).__name__} samples "
                f"{tuple(images.shape[1:])} points: use callbacks.toy_density for 2-d data."
            )
        log_image_grid(trainer, f"{stage}/samples", images, nrow=max(1, round(math.sqrt(self.n))))


class LatentSpaceCallback(pl.Callback):
    evaluation = True

    def __init__(self, n_codes: PositiveInt = 5000, manifold_size: PositiveInt = 15) -> None:
        self.n_codes, self.manifold_size = n_codes, manifold_size
        self._codes: list[tuple[torch.Tensor, torch.Tensor]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        _needs(pl_module, "latent_space", "encode", "decode")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._codes = []

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not has_image_logger(trainer) or sum(len(c) for c, _ in self._codes) >= self.n_codes:
            return
        x, y = batch[0], batch[1]
        codes = pl_module.encode(x)
        if codes.dim() != 2 or codes.shape[1] != 2:
            raise UserError(
                f"callbacks.latent_space draws 2-d codes; {type(pl_module).__name__} encodes to "
                f"{tuple(codes.shape[1:])}: use a 2-d latent (model=vae_2d) or remove it."
            )
        self._codes.append((codes.detach().cpu(), y.detach().cpu()))

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._codes:
            return
        codes, labels = (
            torch.cat(parts)[: self.n_codes] for parts in zip(*self._codes, strict=True)
        )
        self._codes = []
        names = getattr(trainer.datamodule, "classes", None)
        log_figure(trainer, "val/latent_scatter", latent_scatter_figure(codes, labels, names))
        n = self.manifold_size
        images = pl_module.decode(manifold_codes(n).to(pl_module.device))
        log_image_grid(trainer, "val/latent_manifold", images, nrow=n)


class _FirstBatch(pl.Callback):
    """Draws from the first batch of one loader: validation's (`stage` "val", loader 0), or the
    pairs test set (`stage` "test", loader 1)."""

    protocol: tuple[str, ...] = ()
    name = ""
    stage, loader = "val", 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        _needs(pl_module, self.name, *self.protocol)

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, *where: Any
    ) -> None:
        batch, batch_idx, dataloader_idx = where[-3:]
        first = batch_idx == 0 and dataloader_idx == self.loader
        if stage == self.stage and first and has_image_logger(trainer):
            self.draw(trainer, pl_module, batch)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *where: Any
    ) -> None:
        self._batch_end(trainer, pl_module, "val", *_with_loader(where))

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *where: Any
    ) -> None:
        self._batch_end(trainer, pl_module, "test", *_with_loader(where))


def _with_loader(where: tuple[Any, ...]) -> tuple[Any, ...]:
    """(outputs, batch, batch_idx, dataloader_idx): Lightning leaves the last out for one loader."""
    return where if len(where) == 4 else (*where, 0)


class ReconstructionsCallback(_FirstBatch):
    evaluation = True
    protocol, name = ("reconstruct",), "reconstructions"

    def __init__(self, n: PositiveInt = 16, nrow: PositiveInt = 16, seed: int = 0) -> None:
        self.n, self.nrow, self.seed = n, nrow, seed

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> None:
        x = batch[0][: self.n]
        noise = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        reconstructions = pl_module.reconstruct(x, noise)
        if reconstructions is not None:
            grid = torch.cat([x, reconstructions])
            log_image_grid(trainer, "val/reconstructions", grid, nrow=min(self.nrow, len(x)))


class RoutingMapsCallback(_FirstBatch):
    evaluation = True
    protocol, name = ("routing",), "routing_maps"

    def __init__(self, n: PositiveInt = 8) -> None:
        self.n = n

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> None:
        x = batch[0][: self.n]
        routed = pl_module.routing(x)
        if routed is not None:
            coupling, grid = routed
            rows = coupling_rows(x, coupling, grid)
            nrow = 1 + coupling.shape[-1]  # the image, then a map per class
            log_image_grid(trainer, "val/routing_coefficients", rows, nrow=nrow)


class PairsFigureCallback(_FirstBatch):
    evaluation = True
    protocol, name = ("class_scores",), "pairs_figure"
    stage, loader = "test", 1

    def __init__(self, n: PositiveInt = 16) -> None:
        self.n = n

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> None:
        images, pair = batch[0][: self.n], batch[1][: self.n]
        scores = pl_module.class_scores(images)
        names = getattr(trainer.datamodule, "classes", None) or [
            str(i) for i in range(scores.shape[1])
        ]
        log_figure(trainer, "test/pairs", pairs_figure(images, scores, pair, names))
