"""Multilabel "softmax + cross-entropy" (kexue.fm/archives/7359) and its soft-label version (9064).

For class scores s (..., C) with positive classes Ω_pos and negative classes Ω_neg:

    L = log(1 + sum_{i in Ω_neg} e^{s_i}) + log(1 + sum_{j in Ω_pos} e^{-s_j})

It asks every positive score to exceed 0 and every negative one to stay below it, so a class is
predicted where s > 0. The soft-label version (kexue.fm/archives/9064, the ZLPR loss of
arXiv:2208.02955) takes targets t_i in [0, 1]:

    L = log(1 + sum_i t_i e^{-s_i}) + log(1 + sum_i (1 - t_i) e^{s_i})

It is the hard loss when t is 0/1, and its minimum lies at t_i e^{-s_i} = (1 - t_i) e^{s_i}, i.e.
t_i = sigmoid(2 s_i): `multilabel_probs` reads probabilities off the scores that way.

Both are computed as logsumexp over the class dim with a 0 column appended (the "1 +"): a class
left out of a sum gets the term -inf, and no exp of a large number is ever taken, so logits of
±1e4 give finite losses (also for rows with no positives or no negatives). `reduction`: `mean` or
`sum` over the leading dims, or `none` for the per-row loss (...).

`BinaryCE`, sigmoid binary cross-entropy summed over the classes, is the baseline to compare with
(loss=multilabel_ce vs loss=bce).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Reduction = Literal["mean", "sum", "none"]


def _log1p_sum_exp(terms: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_i e^{terms_i}) over the last dim: logsumexp with a 0 column appended."""
    zeros = terms.new_zeros((*terms.shape[:-1], 1))
    return torch.cat([terms, zeros], dim=-1).logsumexp(-1)


def _reduce(loss: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def multilabel_categorical_crossentropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """The hard-label loss for scores (..., C) and 0/1 (or bool) targets; nonzero = positive."""
    positive = targets.bool()
    neg_terms = torch.where(positive, float("-inf"), logits)  # s_i, i in Ω_neg
    pos_terms = torch.where(positive, -logits, float("-inf"))  # -s_j, j in Ω_pos
    return _reduce(_log1p_sum_exp(neg_terms) + _log1p_sum_exp(pos_terms), reduction)


def multilabel_categorical_crossentropy_soft(
    logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """The soft-label loss for scores (..., C) and targets t in [0, 1] of the same shape.

    The weights go into the exponents, t_i e^{-s_i} = e^{log t_i - s_i}, and a class with t_i = 0
    (or 1 - t_i = 0) is dropped from its sum exactly rather than clipped to a small epsilon.
    """
    t = targets.to(logits.dtype)
    tiny = torch.finfo(t.dtype).tiny  # keeps log t finite (and its gradient 0) where t = 0
    pos_terms = torch.where(t > 0, t.clamp_min(tiny).log() - logits, float("-inf"))
    neg_terms = torch.where(t < 1, (1 - t).clamp_min(tiny).log() + logits, float("-inf"))
    return _reduce(_log1p_sum_exp(pos_terms) + _log1p_sum_exp(neg_terms), reduction)


def multilabel_predict(logits: torch.Tensor) -> torch.Tensor:
    """The decision rule of both losses: class i is predicted where s_i > 0 (a bool tensor)."""
    return logits > 0


def multilabel_probs(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities sigmoid(2 s): where the soft-label loss puts its minimum (9064)."""
    return torch.sigmoid(2 * logits)


class MultilabelCE(nn.Module):
    """Loss plugin for multilabel classifiers (task "multilabel"); `soft` for targets in [0, 1]."""

    task = "multilabel"

    def __init__(self, soft: bool = False) -> None:
        super().__init__()
        self.soft = soft

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """`loss`: the batch mean of the per-example loss; logits and targets (B, C)."""
        if self.soft:
            return {"loss": multilabel_categorical_crossentropy_soft(logits, targets)}
        return {"loss": multilabel_categorical_crossentropy(logits, targets)}


class BinaryCE(nn.Module):
    """Sigmoid binary cross-entropy summed over the classes, batch mean (task "multilabel")."""

    task = "multilabel"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = targets.to(logits.dtype)
        per_class = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return {"loss": per_class.sum(-1).mean()}
