"""Classifier with independent class scores in [0, 1]: capsule nets and the sigmoid CNN baseline.

The author's experiment (kexue.fm/archives/4819): train on single items with the margin loss,
then test on two items of different classes stacked into one 56x28 image. A prediction is right
when the top-2 scores are exactly the two classes (`pairs_top2`); `pairs_both_above` asks the
classes scoring above 0.5 to be exactly the two true ones. A softmax classifier cannot express
"two items"; capsule lengths and sigmoids can, and routing is what lets the capsule net separate
them.

Metrics: `acc` (single items, argmax), the loss terms; on the pairs test set (the data module's
second test loader) `pairs_top2` and `pairs_both_above`. TensorBoard's reconstructions, routing
coefficients by position and test pairs titled with their top-2 classes come from the image
callbacks (`src/callbacks/image_evaluation.py`), through `reconstruct`, `routing` and
`class_scores`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.utils.bounds import PositiveInt
from src.utils.errors import UserError


class MultiItemClassifier(BaseModule):
    loss_task = "multi_item"
    monitor = "val/acc"
    monitor_mode = "max"
    compiled = ("net",)

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        decoder: nn.Module | None = None,
        n_classes: PositiveInt = 10,
        eval_seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed, compile)
        self.save_hparams()
        self.net, self.decoder, self.n_classes = net, decoder, n_classes

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
        return terms["pairs_top2"]

    def class_scores(self, images: torch.Tensor) -> torch.Tensor:
        """The class scores (B, K) in [0, 1]."""
        return self(images)[0]

    @torch.no_grad()
    def reconstruct(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The decoder's image of each image's predicted class capsule; None without one."""
        scores, poses = self(images)
        if self.decoder is None or poses is None:
            return None
        return self.decoder(poses, scores.argmax(-1))

    @torch.no_grad()
    def routing(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]] | None:
        """The routing coefficients c_ij of these images (B, N, K) and the primary capsules'
        grid; None for a net without routing or primary capsules."""
        routing = getattr(self.net, "routing", None)
        grid = getattr(getattr(self.net, "primary", None), "grid", None)
        if routing is None or grid is None:
            return None
        self.net(images)
        coupling = getattr(routing, "last_coupling", None)
        return None if coupling is None else (coupling, grid)
