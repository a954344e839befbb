"""Observation models p(x|z) of a VAE decoder: the reconstruction term of the ELBO.

Each returns log p(x | decoder output) summed over all pixels of a sample (nats per image) and
the mean image used for reconstructions and samples. Bernoulli is the author's choice (binary
cross-entropy); a Gaussian or continuous Bernoulli suits grey-level pixels (their values are
densities, so they are not comparable with the Bernoulli's probabilities).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import ContinuousBernoulli as _ContinuousBernoulli

from src.utils.bounds import PositiveFloat


class Likelihood(nn.Module):
    """Interface: `log_prob(out, x) -> (B,)` and `mean(out) -> image`."""

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Bernoulli(Likelihood):
    """log p(x|z) = sum_i x_i log s(o_i) + (1 - x_i) log(1 - s(o_i)), o the decoder logits."""

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        return -bce.flatten(1).sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class Gaussian(Likelihood):
    """log p(x|z) = sum_i log N(x_i; m_i, sigma^2), m = sigmoid(o); sigma fixed or learned."""

    def __init__(self, sigma: PositiveFloat = 0.1, learn_sigma: bool = False) -> None:
        super().__init__()
        log_sigma = torch.tensor(math.log(sigma))
        if learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = (x - torch.sigmoid(out)) / self.log_sigma.exp()
        per_pixel = -0.5 * z.pow(2) - self.log_sigma - 0.5 * math.log(2 * math.pi)
        return per_pixel.flatten(1).sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class ContinuousBernoulli(Likelihood):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the normalised Bernoulli on [0, 1]."""

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        dist = _ContinuousBernoulli(logits=out, validate_args=False)
        return dist.log_prob(x).flatten(1).sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return _ContinuousBernoulli(logits=out, validate_args=False).mean
