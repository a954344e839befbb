"""Contrastive divergence for energy models (kexue.fm/archives/6316; Du & Mordatch, IGEBM).

The maximum-likelihood gradient of p(x) = exp(-E(x)) / Z is
    grad_theta E_data[-log p] = E_data[grad_theta E] - E_model[grad_theta E],
so with samples x- of the model (Langevin chains, held fixed) the loss is

    L = mean E(x+) - mean E(x-) + alpha * mean(E(x+)^2 + E(x-)^2),

the last term keeping the energies near 0 (nothing else fixes their offset).

`MEGLoss` is the energy's loss of the generator model (kexue.fm/archives/6331, after Kumar et al.
2019), where a generator supplies x-: the same contrast with a zero-centred gradient penalty on
the data instead of the energy regulariser, in the adversarial plugin's interface (E = -critic).
"""

from __future__ import annotations

import torch
from torch import nn

from src.losses.gradient_penalty import WassersteinGP
from src.utils.bounds import NonNegativeFloat


class ContrastiveDivergence(nn.Module):
    """Loss plugin of energy models (task "ebm")."""

    task = "ebm"

    def __init__(self, alpha: NonNegativeFloat = 1.0) -> None:
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


class MEGLoss(WassersteinGP):
    """Energy (= -critic) loss of the generator model:

        mean E(real) - mean E(fake) + lam * mean |grad_x E(real)|^2
            + alpha * mean(E(real)^2 + E(fake)^2).

    The zero-centred penalty on real data (Kumar et al.) lets the energy grow sharp wells, which a
    1-Lipschitz WGAN critic could not; the alpha term keeps the energies bounded, as in
    `ContrastiveDivergence`. The generator's loss is the inherited -mean D(G(z)) = mean E(G(z)).
    """

    def __init__(self, lam: NonNegativeFloat = 0.1, alpha: NonNegativeFloat = 0.1) -> None:
        super().__init__(penalty="two_sided", lam=lam)
        self.alpha = alpha

    def critic_loss(
        self,
        critic: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        real = real.detach().requires_grad_(True)
        d_real, d_fake = critic(real), critic(fake.detach())
        # with lam = 0 the penalty is only reported: no second-order graph
        (grad,) = torch.autograd.grad(
            d_real.sum(), real, create_graph=self.lam > 0, retain_graph=True
        )
        penalty = grad.flatten(1).square().sum(1).mean()
        reg = self.alpha * (d_real.square().mean() + d_fake.square().mean())
        wasserstein = d_real.mean() - d_fake.mean()
        return {
            "loss": -wasserstein + self.lam * penalty + reg,
            "wasserstein": wasserstein,
            "gradient_penalty": penalty,
            "reg": reg.detach(),
        }
