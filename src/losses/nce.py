"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010; kexue.fm/archives/5617).

An unnormalised log-density G(x) plus a learned log-normaliser log Z define the model
    log p(x) = G(x) - log Z.
NCE fits both by telling data (label 1) from noise (label 0) drawn from a known q, k noise samples
per data sample, with the posterior of "data" under the model as the classifier:
    h(x) = p(x) / (p(x) + k q(x)) = sigmoid(logit(x)),   logit(x) = log p(x) - log(k q(x)).
The loss is the negative of the NCE objective, per data sample:
    L = -E_data log sigmoid(logit) - k E_noise log sigmoid(-logit),
the two expectations estimated by the means over the N data and the kN noise samples, so that L is
the summed binary cross-entropy of all (1 + k) N samples divided by N. For any k its minimum over
all functions is at p = p_data, which makes log Z the true normaliser log ∫ e^G: no partition
function is ever computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from src.utils.bounds import PositiveInt


def nce_loss(
    log_model_data: torch.Tensor,
    log_model_noise: torch.Tensor,
    log_q_data: torch.Tensor,
    log_q_noise: torch.Tensor,
    k: float,
) -> torch.Tensor:
    """L from the model's log p = G - log Z and the noise's log q at data (N,) and noise (kN,)."""
    logit_data = log_model_data - log_q_data - math.log(k)
    logit_noise = log_model_noise - log_q_noise - math.log(k)
    return -F.logsigmoid(logit_data).mean() - k * F.logsigmoid(-logit_noise).mean()


class NCELoss(nn.Module):
    """NCE loss plugin for unnormalised density models (task "density"); owns the parameter log Z.

    `forward(log_density, data, noise)` draws k N samples from the distribution `noise` (whose
    `sample((n,))` has data's shape and whose `log_prob` gives (n,)), or takes them as
    `noise_samples` (k N, ...) (an evaluation drawing them from a seeded generator), scores data
    and noise in one call of `log_density` (G, returning (n,)), and returns `loss` and `nce_acc`,
    the rate at which the classifier sign(logit) tells the (1 + k) N samples apart.
    """

    task = "density"

    def __init__(self, noise_ratio: PositiveInt = 1, init_log_z: float = 0.0) -> None:
        super().__init__()
        if noise_ratio < 1:
            raise ValueError(f"noise_ratio must be a positive integer, got {noise_ratio}")
        self.noise_ratio = noise_ratio
        self.log_z = nn.Parameter(torch.tensor(float(init_log_z)))

    def forward(
        self,
        log_density: Callable[[torch.Tensor], torch.Tensor],
        data: torch.Tensor,
        noise: Distribution,
        noise_samples: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        n = data.shape[0]
        if noise_samples is None:
            noise_samples = noise.sample((self.noise_ratio * n,)).to(data)
        if noise_samples.shape[0] != self.noise_ratio * n:
            raise ValueError(
                f"need noise_ratio * len(data) = {self.noise_ratio * n} noise samples, "
                f"got {noise_samples.shape[0]}"
            )
        x = torch.cat([data, noise_samples])
        log_model = log_density(x) - self.log_z
        log_q = noise.log_prob(x)
        loss = nce_loss(log_model[:n], log_model[n:], log_q[:n], log_q[n:], self.noise_ratio)
        with torch.no_grad():
            logit = log_model - log_q - math.log(self.noise_ratio)
            correct = (logit[:n] > 0).sum() + (logit[n:] < 0).sum()
            nce_acc = correct.to(logit.dtype) / x.shape[0]
        return {"loss": loss, "nce_acc": nce_acc}
