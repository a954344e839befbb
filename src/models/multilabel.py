"""Multilabel classifier: an image -> one logit s_k per class, the predicted set {k : s_k > 0}.

It trains with any loss of task "multilabel" (conf/loss): the author's multilabel softmax + CE
log(1 + sum_neg e^{s_i}) + log(1 + sum_pos e^{-s_j}) (kexue.fm/archives/7359, `loss=multilabel_ce`),
sigmoid binary CE (`loss=bce`), 1 - smooth F1 (kexue.fm/archives/7726, `loss=smooth_f1`) or
1 - soft accuracy (`loss=soft_accuracy`). Each puts the decision at s_k = 0 (sigmoid(s_k) = 1/2
for the sigmoid ones), so the losses are compared on the same rule.

Batches are (images, labels): labels (B,) for one item per image, or (B, m) for m items, such as
the capsule experiment's two-item images (`data.pairs_train=true`, `data.stacked_pairs=N`); the
targets are the multi-hot y (B, K). Metrics of each split, with P the predicted and Y the true set:
`exact` (P = Y), `f1` (micro F1 = 2 TP / (2 TP + FP + FN) over every image and class, torchmetrics),
`sample_f1` (mean over images of 2 |P ∩ Y| / (|P| + |Y|)); the second test loader (the test pairs)
logs the same as `pairs_exact`, `pairs_f1`, `pairs_sample_f1`, and `pairs_top2` (the two highest
logits are the two classes: the capsule experiment's rule).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelF1Score

from src.losses.multilabel import multilabel_predict
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.utils.bounds import PositiveInt


def multi_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class indices (B,) or (B, m) -> 0/1 targets (B, n_classes)."""
    one_hot = F.one_hot(labels, n_classes)
    return (one_hot if labels.ndim == 1 else one_hot.amax(1)).float()


def set_metrics(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """`exact` and `sample_f1` of bool predictions against 0/1 targets, both (B, K), batch means;
    an image with P and Y both empty counts 0 in sample_f1."""
    y = targets.bool()
    hits = (predicted & y).sum(-1)
    sizes = predicted.sum(-1) + y.sum(-1)
    return {
        "exact": (predicted == y).all(-1).float().mean(),
        "sample_f1": (2 * hits / sizes.clamp_min(1)).mean(),
    }


class MultilabelClassifier(BaseModule):
    loss_task = "multilabel"
    monitor = "val/exact"
    monitor_mode = "max"

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        n_classes: PositiveInt = 10,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed)
        self.save_hparams()
        self.net, self.n_classes = net, n_classes
        self.micro_f1 = nn.ModuleDict(
            {
                split: MultilabelF1Score(n_classes, average="micro")
                for split in ("val", "test", "test_pairs")
            }
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K)."""
        return self.net(images)

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> torch.Tensor:
        return self._step(batch, stage, prefix="")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._step(batch, "test", prefix="pairs_" if dataloader_idx == 1 else "")

    def _step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, prefix: str
    ) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        targets = multi_hot(labels, self.n_classes)
        terms = self.loss(logits, targets)
        predicted = multilabel_predict(logits.detach())
        terms.update(set_metrics(predicted, targets))
        if prefix == "pairs_":
            top2 = logits.topk(2, dim=-1).indices.sort(-1).values
            terms["top2"] = (top2 == labels.sort(-1).values).all(-1).float().mean()
        self.log_terms(stage, {prefix + k: v for k, v in terms.items()}, len(labels))
        if stage != "train":
            f1 = self.micro_f1[f"{stage}_pairs" if prefix else stage]
            f1(predicted.long(), targets.long())
            self.log(f"{stage}/{prefix}f1", f1, on_epoch=True, add_dataloader_idx=False)
        return terms["loss"]
