"""KL divergences of the VAE latents to their priors (kexue.fm/archives/5253, 6705).

Gaussian posterior, standard normal prior, closed form per sample (the diagonal case of
`src.losses.gaussian.gaussian_kl`, kexue.fm/archives/8512):
    KL(N(mu, sigma^2) || N(0, I)) = -1/2 * sum_d (1 + log sigma_d^2 - mu_d^2 - sigma_d^2)
Categorical posterior p (per variable, K classes), uniform prior:
    KL(p || U(K)) = sum_k p_k log p_k + log K, summed over the variables.
The Monte Carlo estimator of either is log q(z|x) - log p(z) at a posterior sample z.
"""

from __future__ import annotations

import math

import torch

from src.losses.gaussian import gaussian_kl_diagonal


def kl_normal_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, I)), summed over the last dimension.

    The diagonal case of `src.losses.gaussian.gaussian_kl` with a standard normal prior.
    """
    return gaussian_kl_diagonal(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))


def kl_categorical_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || uniform) for (..., n_vars, K) logits, summed over the variables."""
    log_p = logits.log_softmax(-1)
    return (log_p.exp() * log_p).sum(-1).add(math.log(logits.shape[-1])).sum(-1)


def kl_monte_carlo(log_q: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Single-sample estimate log q(z|x) - log p(z) (unbiased for the KL)."""
    return log_q - log_prior
