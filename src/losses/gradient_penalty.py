"""Wasserstein GAN losses with a gradient penalty (kexue.fm/archives/4439, 6280; Gulrajani et al.).

The critic D estimates the Wasserstein-1 distance through the Kantorovich-Rubinstein dual,

    W(P_r, P_g) = max_{|D|_L <= 1} E_r[D(x)] - E_g[D(x)],

so the critic minimises  E_g[D(x)] - E_r[D(x)] + lambda * E[penalty(|grad D(x_hat)|_2)]  and the
generator minimises  -E_g[D(G(z))]. The Lipschitz constraint is enforced softly at
x_hat = e x_real + (1 - e) x_fake, with e ~ U(0, 1) drawn PER SAMPLE and the gradient norm taken
PER SAMPLE over all of its dimensions:

- "two_sided": (|g| - 1)^2, the paper's;
- "one_sided": relu(|g| - 1), the author's linear one-sided variant (only |g| > 1 is penalised);
- "none": no penalty; the critic's weights are clipped to [-clip, clip] after each step instead
  (the original WGAN, for comparison).

A per-sample penalty needs a critic without BatchNorm: with it, D(x_hat_i) depends on the other
samples of the batch and the gradient of sum_i D(x_hat_i) with respect to x_hat_i is no longer the
gradient of D(x_hat_i) alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from src.utils.autograd import gradients_on, leaf
from src.utils.bounds import NonNegativeFloat

Penalty = Literal["two_sided", "one_sided", "none"]
PENALTIES = ("two_sided", "one_sided", "none")


def interpolate(
    real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x_hat = e x_real + (1 - e) x_fake with one e ~ U(0, 1) per sample."""
    shape = (len(real),) + (1,) * (real.dim() - 1)
    e = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    return e * real + (1 - e) * fake


def critic_gradient_norm(
    critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """|grad_x D(x_i)|_2 for every sample i, (B,); differentiable when gradients are enabled."""
    train_through = torch.is_grad_enabled()
    with gradients_on():
        x = leaf(x)
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=train_through)
    return grad.flatten(1).norm(dim=1)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    kind: Penalty = "two_sided",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(penalty per sample (B,), gradient norm per sample (B,)) at random interpolates."""
    norm = critic_gradient_norm(critic, interpolate(real, fake.detach(), generator))
    if kind == "two_sided":
        return (norm - 1).pow(2), norm
    if kind == "one_sided":
        return (norm - 1).relu(), norm
    raise ValueError(f"penalty kind must be 'two_sided' or 'one_sided', got {kind!r}")


class WassersteinGP(nn.Module):
    """Loss plugin for adversarial models (task "adversarial"): critic and generator losses."""

    task = "adversarial"

    def __init__(
        self,
        penalty: Penalty = "two_sided",
        lam: NonNegativeFloat = 10.0,
        clip: NonNegativeFloat = 0.01,
    ):
        super().__init__()
        if penalty not in PENALTIES:
            raise ValueError(f"loss.penalty={penalty!r}: choose one of {', '.join(PENALTIES)}")
        self.penalty, self.lam, self.clip = penalty, lam, clip

    def critic_loss(
        self,
        critic: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """`loss` = E[D(fake)] - E[D(real)] + lambda E[penalty]; `wasserstein` = -(first two)."""
        wasserstein = critic(real).mean() - critic(fake.detach()).mean()
        terms = {"wasserstein": wasserstein}
        if self.penalty == "none":
            terms["loss"] = -wasserstein
            return terms
        penalty, norm = gradient_penalty(critic, real, fake, self.penalty, generator)
        terms.update(
            loss=-wasserstein + self.lam * penalty.mean(),
            gradient_penalty=penalty.mean(),
            grad_norm=norm.mean(),
            grad_norm_max=norm.max(),
        )
        return terms

    def generator_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()

    @torch.no_grad()
    def constrain(self, critic: nn.Module) -> None:
        """Weight clipping after a critic step when there is no penalty (the original WGAN)."""
        if self.penalty == "none":
            for p in critic.parameters():
                p.clamp_(-self.clip, self.clip)
