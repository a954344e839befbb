"""Pictures of an image model, written once for every model that offers the protocol:

    callbacks:
      sample_grid:
        _target_: src.callbacks.image_evaluation.SampleGridCallback
      latent_space:
        _target_: src.callbacks.image_evaluation.LatentSpaceCallback

- `SampleGridCallback`: `<stage>/samples`, a grid of `n` images from `sample(n, generator)` with
  the generator seeded `seed`, the same noise every epoch (VAE, WGAN-GP, EBM).
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

from src.evaluation.figures import latent_scatter_figure, manifold_codes
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
