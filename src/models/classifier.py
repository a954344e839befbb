"""Single-label image classifier (`model=classifier`).

Besides classifying, a trained classifier is the feature extractor of the sample-quality metrics
(Frechet distance and KID in its penultimate layer, src/metrics/sample_quality.py), which put the
VAE, the WGAN-GP and the energy models on one scale. Metrics: `loss`, `acc` (argmax = label).
"""

from __future__ import annotations

import torch
from torch import nn

from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory


class Classifier(BaseModule):
    loss_task = "classification"
    monitor = "val/acc"
    monitor_mode = "max"
    compiled = ("net",)

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        eval_seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed, compile)
        self.save_hparams(logger=False)
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        terms = self.loss(logits, labels)
        terms["acc"] = (logits.argmax(-1) == labels).float().mean()
        self.log_terms(stage, terms, len(labels))
        return terms["loss"]
