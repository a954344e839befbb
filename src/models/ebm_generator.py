"""'GAN = analysis + sampling' (kexue.fm/archives/6331, after Kumar et al. 2019, Maximum Entropy
Generators for Energy-Based Models).

An energy E(x) = -D(x) (the WGAN-GP critic, trained by the `MEGLoss` plugin: E(x) of real minus
generated samples plus a zero-centred gradient penalty on the real ones) and a generator G that
learns to sample from p(x) = exp(-E(x)) / Z by minimising

    KL(p_G || p) = E_z[E(G(z))] - H(G(z)) + log Z.

The entropy H(G(z)) is what keeps G from collapsing onto the lowest-energy mode. For a
deterministic G, H(G(z)) grows with the mutual information between code and sample, which a
statistics network T(z, x) estimates with the Jensen-Shannon bound (Hjelm et al., Deep InfoMax):

    I_JSD(z; x) = E_p(z,x)[-softplus(-T(z, x))] - E_p(z)p(x)[softplus(T(z', x))],

with z' the codes of the batch shuffled. G and T both maximise it (T shares G's optimiser), so
G's loss is  E_z[E(G(z))] - entropy_weight * I_JSD;  entropy_weight=0 switches it off and shows
the mode collapse it prevents. On 2-d data the toy_density callback reports `val/kl`,
KL(true || exp(-E)) on a grid (through `log_density`), with the generator's sample measures, and
shows exp(-E) next to the true density with the generator's samples.

The energy only learns from where the negatives are: where the generator puts no samples, E is
never raised, and exp(-E) keeps mass there. With `refine` (a `LangevinSampler`), each negative
batch G(z) is first moved by a short Langevin chain on E, as in cooperative training of an energy
and a generator (Xie et al. 2018, CoopNets): the chains carry negatives into the regions the
generator misses, and the generator still learns to sample on its own.

Neither chain moves mass between distant modes, so the modes' shares among the negatives are the
generator's, and the energy's wells settle at depths that balance the generator rather than the
data. With `refine_code`, the codes first take a Langevin chain on

    E_z(z) = E(G(z)) + |z|^2 / 2,

i.e. towards p(z) exp(-E(G(z))) (Kumar et al.'s MCMC in latent space, here for the negatives):
modes far apart in x are neighbours in z, and a code moves to the deeper side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.contrastive_divergence import MEGLoss
from src.models.adversarial import AdversarialModule
from src.models.base import OptimizerFactory, SchedulerFactory
from src.models.components.gan_nets import Generator
from src.models.components.langevin import LangevinSampler
from src.models.components.nets import mlp
from src.utils.bounds import NonNegativeFloat, PositiveInt
from src.utils.errors import UserError


class StatisticsNet(nn.Module):
    """T(z, x): an MLP on the code concatenated with the flattened sample."""

    def __init__(
        self, latent_dim: PositiveInt, data_shape: Sequence[int], hidden: Sequence[int]
    ) -> None:
        super().__init__()
        size = latent_dim + int(torch.Size(data_shape).numel())
        self.net = mlp([size, *hidden, 1], activation=nn.SiLU)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, x.flatten(1)], dim=1)).squeeze(-1)


def jsd_mutual_information(
    statistics: nn.Module,
    z: torch.Tensor,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The Jensen-Shannon lower bound on I(z; x) from joint pairs (z_i, x_i) and shuffled ones."""
    perm = torch.randperm(
        len(z), generator=generator, device=generator.device if generator else "cpu"
    )
    shuffled = z[perm.to(z.device)]
    t_joint, t_marginal = statistics(torch.cat([z, shuffled]), torch.cat([x, x])).chunk(2)
    return -F.softplus(-t_joint).mean() - F.softplus(t_marginal).mean()


class EBMGenerator(AdversarialModule):
    """The adversarial loop with E = -critic and the generator loss E[E(G(z))] - w I_JSD."""

    def __init__(
        self,
        generator: Generator,
        critic: nn.Module,
        statistics: nn.Module,
        loss: MEGLoss,
        optimizer: OptimizerFactory,
        critic_optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        critic_scheduler: SchedulerFactory | None = None,
        n_critic: PositiveInt = 5,
        eval_seed: int = 0,
        entropy_weight: NonNegativeFloat = 1.0,
        refine: LangevinSampler | None = None,
        refine_code: LangevinSampler | None = None,
    ) -> None:
        super().__init__(
            generator,
            critic,
            loss,
            optimizer,
            critic_optimizer,
            scheduler,
            critic_scheduler,
            n_critic,
            eval_seed,
        )
        if refine_code is not None and getattr(self.generator, "code", "normal") != "normal":
            raise UserError(
                "model.refine_code samples codes under a N(0, I) prior: set "
                "model.generator.code=normal or model.refine_code=null."
            )
        self.statistics, self.refine, self.refine_code = statistics, refine, refine_code
        self.last_energies: dict[str, torch.Tensor] = {}

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return -self.critic(x)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised log p(x) = -E(x) = D(x)."""
        return self.critic(x)

    def configure_optimizers(self) -> Any:
        optimizers, schedulers = super().configure_optimizers()
        optimizers[0].add_param_group({"params": list(self.statistics.parameters())})
        return optimizers, schedulers

    def negatives(self, n: int) -> torch.Tensor:
        """G(z), the codes moved by `refine_code` on E_z and the samples by `refine` on E when
        there are those chains."""
        z = self.generator.sample_code(n, device=self.device)
        if self.refine_code is not None:
            z = self.refine_code(self.code_energy, z)
        with torch.no_grad():
            fake = self.generator(z)
        return fake if self.refine is None else self.refine(self.energy, fake)

    def code_energy(self, z: torch.Tensor) -> torch.Tensor:
        """E_z(z) = E(G(z)) + |z|^2 / 2: -log of p(z) exp(-E(G(z))) up to a constant."""
        return self.energy(self.generator(z)) + 0.5 * z.flatten(1).square().sum(1)

    def generator_terms(self, n: int) -> dict[str, torch.Tensor]:
        z = self.generator.sample_code(n, device=self.device)
        x = self.generator(z)
        e_fake = self.energy(x)
        self.last_energies = {"e_fake": e_fake.detach()}
        terms = {"generator_loss": e_fake.mean()}
        if self.hparams.entropy_weight > 0:
            terms["mi"] = jsd_mutual_information(self.statistics, z, x)
            terms["generator_loss"] = (
                terms["generator_loss"] - self.hparams.entropy_weight * terms["mi"]
            )
        return terms
