"""Classifier with independent class scores in [0, 1]: capsule nets and the sigmoid CNN baseline.

The author's experiment (kexue.fm/archives/4819): train on single items with the margin loss,
then test on two items of different classes stacked into one 56x28 image. A prediction is right
when the top-2 scores are exactly the two classes (`pairs_top2`); `pairs_both_above` asks the
classes scoring above 0.5 to be exactly the two true ones. A softmax classifier cannot express
"two items"; capsule lengths and sigmoids can, and routing is what lets the capsule net separate
them.

Metrics: `acc` (single items, argmax), the loss terms; on the pairs test set (the data module's
second test loader) `pairs_top2` and `pairs_both_above`. TensorBoard: reconstructions (with a
decoder), routing coefficients by position for a few validation images, and a grid of test pairs
titled with the predicted classes and their scores.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.evaluation.figures import coupling_rows, pairs_figure
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.utils.bounds import NonNegativeInt, PositiveInt
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure, log_image_grid


class MultiItemClassifier(BaseModule):
    loss_task = "multi_item"
    monitor = "val/acc"

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        decoder: nn.Module | None = None,
        n_classes: PositiveInt = 10,
        n_image_examples: NonNegativeInt = 16,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed)
        self.save_hparams()
        self.net, self.decoder, self.n_classes = net, decoder, n_classes
        self._examples: dict[str, Any] = {}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(class scores (B, K) in [0, 1], class capsule poses (B, K, D) or None)."""
        return self.net(images)

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> torch.Tensor:
        images, labels = batch
        scores, poses = self(images)
        reconstruction = None
        if self.decoder is not None and poses is not None:
            keep = labels if stage == "train" else scores.argmax(-1)  # the paper's masking
            reconstruction = self.decoder(poses, keep)
        targets = F.one_hot(labels, self.n_classes).to(scores.dtype)
        terms = self.loss(scores, targets, reconstruction, images)
        terms["acc"] = (scores.argmax(-1) == labels).float().mean()
        self.log_terms(stage, terms, len(labels))
        if stage == "val" and batch_idx == 0:
            routing = getattr(self.net, "routing", None)
            self._examples = {
                "images": images,
                "reconstruction": reconstruction,
                "coupling": getattr(routing, "last_coupling", None),
            }
        return terms["loss"]

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        if dataloader_idx == 0:
            return self.shared_step(batch, batch_idx, "test")
        images, pair = batch
        if getattr(self.net, "fixed_input_size", False):
            raise UserError(
                f"{type(self.net).__name__} has per-input routing weights and reads only the "
                "image size it was built for, not the 56x28 pairs: use model=capsnet_small or "
                "model=cnn_sigmoid, or data.stacked_pairs=0."
            )
        scores, _ = self(images)
        top2 = scores.topk(2, dim=-1).indices.sort(-1).values
        terms = {
            "pairs_top2": (top2 == pair.sort(-1).values).all(-1).float().mean(),
            "pairs_both_above": ((scores > 0.5) == F.one_hot(pair, self.n_classes).sum(1).bool())
            .all(-1)
            .float()
            .mean(),
        }
        self.log_terms("test", terms, len(pair))
        if batch_idx == 0 and has_image_logger(self.trainer):
            self._log_pairs(images, scores, pair)
        return terms["pairs_top2"]

    def on_validation_epoch_end(self) -> None:
        if not self._examples or not has_image_logger(self.trainer):
            return
        n = self.hparams.n_image_examples
        images, reconstruction = self._examples["images"][:n], self._examples["reconstruction"]
        if reconstruction is not None:
            log_image_grid(
                self.trainer, "val/reconstructions", torch.cat([images, reconstruction[:n]]), nrow=n
            )
        coupling = self._examples["coupling"]
        grid = getattr(getattr(self.net, "primary", None), "grid", None)
        if coupling is not None and grid is not None:  # the same batch's routing coefficients
            shown = images[:8]
            coupling = coupling[: len(shown)]
            rows = coupling_rows(shown, coupling, grid)
            nrow = 1 + coupling.shape[-1]  # the image, then a map per class
            log_image_grid(self.trainer, "val/routing_coefficients", rows, nrow=nrow)

    def _log_pairs(self, images: torch.Tensor, scores: torch.Tensor, pair: torch.Tensor) -> None:
        names = getattr(self.trainer.datamodule, "classes", None) or [
            str(i) for i in range(self.n_classes)
        ]
        n = self.hparams.n_image_examples
        figure = pairs_figure(images[:n], scores[:n], pair[:n], names)
        log_figure(self.trainer, "test/pairs", figure)
