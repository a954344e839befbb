"""The VAE objective: negative ELBO in nats per example (kexue.fm/archives/5253).

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z))

Both terms are summed over pixels / latent dimensions of a sample and then averaged over the
batch, so the number is a bound on -log p(x) in nats. There is no KL weight: a weighted sum is
not an ELBO.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from src.losses.likelihoods import Likelihood


class ELBO(nn.Module):
    """Loss plugin for the VAE: a likelihood p(x|z) and a KL estimator (closed form or MC)."""

    task = "vae"

    def __init__(
        self, likelihood: Likelihood, kl: Literal["closed_form", "monte_carlo"] = "closed_form"
    ) -> None:
        super().__init__()
        if kl not in ("closed_form", "monte_carlo"):
            raise ValueError(f"kl={kl!r}: use closed_form or monte_carlo")
        self.likelihood, self.kl = likelihood, kl

    def forward(
        self, x: torch.Tensor, out: torch.Tensor, kl: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-example terms: `recon` = -log p(x|z), `kl`, and `nelbo` = recon + kl."""
        recon = -self.likelihood.log_prob(out, x)
        return {"nelbo": recon + kl, "recon": recon, "kl": kl}
