"""Contrastive divergence for energy models (kexue.fm/archives/6316; Du & Mordatch, IGEBM).

The maximum-likelihood gradient of p(x) = exp(-E(x)) / Z is
    grad_theta E_data[-log p] = E_data[grad_theta E] - E_model[grad_theta E],
so with samples x- of the model (Langevin chains, held fixed) the loss is

    L = mean E(x+) - mean E(x-) + alpha * mean(E(x+)^2 + E(x-)^2),

the last term keeping the energies near 0 (nothing else fixes their offset).
"""

from __future__ import annotations

import torch
from torch import nn


class ContrastiveDivergence(nn.Module):
    """Loss plugin of energy models (task "ebm")."""

    task = "ebm"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def forward(self, e_real: torch.Tensor, e_fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """`loss` and its terms `cd` and `reg`, plus the mean energies `e_real`, `e_fake`."""
        cd = e_real.mean() - e_fake.mean()
        reg = (e_real.square().mean() + e_fake.square().mean()) * self.alpha
        return {
            "loss": cd + reg,
            "cd": cd.detach(),
            "reg": reg.detach(),
            "e_real": e_real.mean().detach(),
            "e_fake": e_fake.mean().detach(),
        }
