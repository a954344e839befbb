"""Smooth stand-ins for max, accuracy and F1 (kexue.fm/archives/6620, 7726; smooth max: 3290).

Smooth maximum, with temperature T > 0, over n entries:
    smax_T(x) = T log sum_i e^{x_i / T},   max(x) <= smax_T(x) <= max(x) + T log n,
the lower bound strict for n > 1; smax_T -> max as T -> 0.
Accuracy counts sum_k y_k onehot(argmax p)_k per example; putting the probabilities p in place
of the one-hot argmax gives the soft accuracy
    acc = mean over examples of sum_k y_k p_k,
for probabilities p over the last dim (summing to 1) and targets y: one-hot, or multi-hot with
entries 0/1 left unnormalised, so that for one-hot p it is the rate at which the top class is one
of the gold ones; it lies in [0, 1]. F1 = 2 TP / (2 TP + FP + FN) with TP = sum y p,
FP = sum (1 - y) p and FN = sum y (1 - p) for 0/1 predictions p; with probabilities it becomes
    F1 = 2 sum y p / sum (y + p),
summed over every position and class of the batch (micro F1), in [0, 1], and the true F1 when p
is exactly 0/1. `eps` in the denominator makes it 0 for a batch with no gold and no predicted
positive. The loss is 1 - F1.

The functions take probabilities, so a tagger can pass softmax marginals (B, T, K) with one-hot
tags and a mask (B, T) that drops padding (and leave out the columns of tags, such as O, that
should not count). The plugins take the logits s of a multilabel classifier (B, C) and apply
p = sigmoid(s) themselves; `SoftAccuracyLoss` treats each class as a two-way choice with
probabilities (p, 1 - p) and targets (y, 1 - y), so its accuracy is the smooth per-label one.
"""

from __future__ import annotations

import torch
from torch import nn


def smooth_max(x: torch.Tensor, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    """T log sum e^{x / T} along `dim`: the smooth maximum at temperature T > 0.

    Computed as m + T log sum e^{(x - m) / T} with m = max(x) held constant, which keeps x / T from
    overflowing at small T and the result >= max(x) in floating point too.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    top = x.amax(dim=dim, keepdim=True).detach()
    return top.squeeze(dim) + temperature * torch.logsumexp((x - top) / temperature, dim=dim)


def _position_weights(probs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mask (probs.shape[:-1]) as probs' dtype, all ones without one."""
    if mask is None:
        return probs.new_ones(probs.shape[:-1])
    return mask.to(probs.dtype).expand(probs.shape[:-1])


def soft_accuracy(
    probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """mean over the (unmasked) positions of sum_k y_k p_k; probs, targets (..., K), mask (...)."""
    weights = _position_weights(probs, mask)
    hits = (targets.to(probs.dtype) * probs).sum(-1)
    return (weights * hits).sum() / weights.sum()


def smooth_f1(
    probs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Micro 2 sum y p / (sum (y + p) + eps) over the (unmasked) positions; mask (...)."""
    weights = _position_weights(probs, mask).unsqueeze(-1)
    y, p = weights * targets.to(probs.dtype), weights * probs
    return 2 * (y * p).sum() / ((y + p).sum() + eps)


def smooth_f1_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """1 - smooth_f1."""
    return 1 - smooth_f1(probs, targets, mask, eps)


class SmoothF1Loss(nn.Module):
    """1 - smooth micro F1 of p = sigmoid(logits) (task "multilabel"); logits, targets (B, C)."""

    task = "multilabel"

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": smooth_f1_loss(torch.sigmoid(logits), targets, eps=self.eps)}


class SoftAccuracyLoss(nn.Module):
    """1 - smooth per-label accuracy of p = sigmoid(logits) (task "multilabel"); (B, C)."""

    task = "multilabel"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        p, y = torch.sigmoid(logits), targets.to(logits.dtype)
        two_way_probs = torch.stack([p, 1 - p], dim=-1)
        two_way_targets = torch.stack([y, 1 - y], dim=-1)
        return {"loss": 1 - soft_accuracy(two_way_probs, two_way_targets)}
