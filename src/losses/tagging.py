"""Sequence-tagging loss: the negative log-likelihood of the gold tag path under the head.

With a CRF head it is nll = log Z(x) - score(gold) (kexue.fm/archives/5542); with a softmax head
it is the summed per-token cross-entropy. `reduction`: `mean` over sentences (pytorch-crf's and
the author's convention, nats per sentence), `token_mean` (nats per token) or `sum`.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn


class TagHead(Protocol):
    def nll(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, reduction: str
    ) -> torch.Tensor: ...


class TagNLL(nn.Module):
    """Loss plugin for taggers (task "tagging")."""

    task = "tagging"

    def __init__(self, reduction: Literal["mean", "sum", "token_mean"] = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(
        self, head: TagHead, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return head.nll(emissions, tags, mask, reduction=self.reduction)
