"""Margin loss for class scores in [0, 1] (Sabour et al. 2017; kexue.fm/archives/4819).

    L = sum_k T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2

with T_k = 1 for the classes present, m+ = 0.9, m- = 0.1 and lambda = 0.5 (the paper) or 0.25 (the
author). Summed over classes, averaged over the batch. With a reconstruction decoder the summed
squared pixel error is added with weight `recon_weight` (0.0005 in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from src.utils.bounds import NonNegativeFloat


def margin_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
) -> torch.Tensor:
    """Per-example margin loss, (B,); `targets` multi-hot (B, K)."""
    present = targets * (m_plus - scores).clamp_min(0) ** 2
    absent = lam * (1 - targets) * (scores - m_minus).clamp_min(0) ** 2
    return (present + absent).sum(-1)


class MarginLoss(nn.Module):
    """Loss plugin for classifiers with independent class scores (task "multi_item")."""

    task = "multi_item"

    def __init__(
        self,
        m_plus: NonNegativeFloat = 0.9,
        m_minus: NonNegativeFloat = 0.1,
        lam: NonNegativeFloat = 0.5,
        recon_weight: NonNegativeFloat = 0.0005,
    ) -> None:
        super().__init__()
        if not 0 <= m_minus < m_plus <= 1:
            raise ValueError(f"need 0 <= m_minus < m_plus <= 1, got {m_minus}, {m_plus}")
        self.m_plus, self.m_minus, self.lam = m_plus, m_minus, lam
        self.recon_weight = recon_weight

    def forward(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        reconstruction: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`loss` (batch mean) and its terms `margin` and, with a decoder, `recon`."""
        margin = margin_loss(scores, targets, self.m_plus, self.m_minus, self.lam).mean()
        if reconstruction is None or images is None:
            return {"loss": margin, "margin": margin}
        recon = (reconstruction - images).pow(2).flatten(1).sum(1).mean()
        return {"loss": margin + self.recon_weight * recon, "margin": margin, "recon": recon}
