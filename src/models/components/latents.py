"""Latent variables of a VAE: what the encoder's output means and how to sample it.

`GaussianLatent` (kexue.fm/archives/5253): the encoder gives (mu, log sigma^2) and
    z = mu + sigma * eps, eps ~ N(0, I)                          (reparameterisation)
`GumbelSoftmaxLatent` (kexue.fm/archives/6705): the encoder gives logits of `n_vars` categorical
variables with `n_classes` classes each, and in training
    z = softmax((logits + g) / tau), g = -log(-log u), u ~ U(0, 1)
with tau = max(tau_min, tau0 * tau_decay ** step) and an optional straight-through one-hot.
In evaluation it draws the exact one-hot sample argmax(logits + g) (Gumbel-max), so validation
and test figures are bounds for the discrete-latent model itself.

Both expose the same interface, so the VAE does not care which one it has:
`param_dim`, `rsample`, `kl`, `log_q`, `log_prior`, `prior_sample`, `mean`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.kl import kl_categorical_uniform, kl_monte_carlo, kl_normal_standard
from src.utils.bounds import PositiveFloat, PositiveInt, Probability

KLEstimator = Literal["closed_form", "monte_carlo"]
LOG_2PI = math.log(2 * math.pi)


def _normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + LOG_2PI)).sum(-1)


class GaussianLatent(nn.Module):
    def __init__(self, dim: PositiveInt = 32) -> None:
        super().__init__()
        self.dim = dim
        self.param_dim = 2 * dim

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = params.chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.split(params)[0]

    def rsample(
        self, params: torch.Tensor, step: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mu, logvar = self.split(params)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + (0.5 * logvar).exp() * eps

    def log_q(self, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _normal_log_prob(z, *self.split(params))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)

    def kl(self, params: torch.Tensor, z: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
        if estimator == "monte_carlo":
            return kl_monte_carlo(self.log_q(params, z), self.log_prior(z))
        return kl_normal_standard(*self.split(params))

    def prior_sample(
        self, n: int, device: torch.device | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.randn(n, self.dim, device=device, generator=generator)


class GumbelSoftmaxLatent(nn.Module):
    def __init__(
        self,
        n_vars: PositiveInt = 32,
        n_classes: PositiveInt = 10,
        tau0: PositiveFloat = 1.0,
        tau_decay: Probability = 0.999,
        tau_min: PositiveFloat = 0.1,
        hard: bool = False,
    ) -> None:
        super().__init__()
        if not 0 < tau_min <= tau0:
            raise ValueError(f"need 0 < tau_min <= tau0, got tau_min={tau_min}, tau0={tau0}")
        self.n_vars, self.n_classes = n_vars, n_classes
        self.tau0, self.tau_decay, self.tau_min, self.hard = tau0, tau_decay, tau_min, hard
        self.dim = self.param_dim = n_vars * n_classes

    def temperature(self, step: int) -> float:
        return max(self.tau_min, self.tau0 * self.tau_decay**step)

    def logits(self, params: torch.Tensor) -> torch.Tensor:
        return params.view(*params.shape[:-1], self.n_vars, self.n_classes)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.logits(params).softmax(-1).flatten(-2)

    def rsample(
        self, params: torch.Tensor, step: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        logits = self.logits(params)
        u = torch.rand(logits.shape, device=logits.device, dtype=logits.dtype, generator=generator)
        perturbed = logits - torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
        one_hot = F.one_hot(perturbed.argmax(-1), self.n_classes).to(logits.dtype)
        if not self.training:
            return one_hot.flatten(-2)
        soft = (perturbed / self.temperature(step)).softmax(-1)
        z = one_hot - soft.detach() + soft if self.hard else soft
        return z.flatten(-2)

    def log_q(self, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q of the categorical sample argmax(z) (exact for one-hot z and Gumbel-max)."""
        idx = z.view(*z.shape[:-1], self.n_vars, self.n_classes).argmax(-1, keepdim=True)
        return self.logits(params).log_softmax(-1).gather(-1, idx).squeeze(-1).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return z.new_full(z.shape[:-1], -self.n_vars * math.log(self.n_classes))

    def kl(self, params: torch.Tensor, z: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
        if estimator == "monte_carlo":
            return kl_monte_carlo(self.log_q(params, z), self.log_prior(z))
        return kl_categorical_uniform(self.logits(params))

    def prior_sample(
        self, n: int, device: torch.device | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        idx = torch.randint(self.n_classes, (n, self.n_vars), device=device, generator=generator)
        return F.one_hot(idx, self.n_classes).float().flatten(-2)
