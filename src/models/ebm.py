"""Energy-based model trained by contrastive divergence with Langevin samples
(kexue.fm/archives/6316; Du & Mordatch 2019, IGEBM).

p(x) = exp(-E(x)) / Z. Each training step draws chain starts from the replay buffer (a share
re-initialised from uniform noise), runs the Langevin sampler under the current energy, stores
the end points back, and minimises the contrastive-divergence loss plugin
    mean E(x+) - mean E(x-) + alpha * mean(E(x+)^2 + E(x-)^2).

Validation logs the loss terms on held-out data and buffer samples. TensorBoard gets energy
histograms and, for images, samples from the buffer (and, from the sample_grid callback, samples of
fresh long chains from noise). On 2-d
toy data the density measures (`val/kl`, KL(true || exp(-E)) on a grid) and figure come from the
`toy_density` callback, through `log_density` and `sample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from src.losses.contrastive_divergence import ContrastiveDivergence
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.langevin import LangevinSampler, ReplayBuffer, uniform_noise
from src.utils.bounds import NonNegativeFloat, NonNegativeInt, PositiveInt, Probability
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_histogram, log_image_grid

NetFactory = Callable[..., nn.Module]


class EBM(BaseModule):
    loss_task = "ebm"
    monitor = "val/loss"

    def __init__(
        self,
        net: NetFactory,
        sampler: LangevinSampler,
        loss: ContrastiveDivergence,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        data_shape: Sequence[int] = (1, 28, 28),
        buffer_size: PositiveInt = 10_000,
        reinit_prob: Probability = 0.05,
        data_noise: NonNegativeFloat = 0.0,
        sample_steps: NonNegativeInt = 200,
        n_image_samples: NonNegativeInt = 64,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed)
        self.save_hparams(logger=False)
        if sampler.data_range is None:
            raise UserError(
                "the EBM's sampler needs a data_range (the box its chains start in and stay in), "
                "e.g. model.sampler.data_range=[0,1] for images."
            )
        self.energy = net(data_shape=data_shape)
        self.sampler = sampler
        self.buffer = ReplayBuffer(buffer_size, data_shape, sampler.data_range, reinit_prob)
        self.last_energies: dict[str, torch.Tensor] = {}
        self._val_energies: list[torch.Tensor] = []

    @property
    def is_2d(self) -> bool:
        return tuple(self.hparams.data_shape) == (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """E(x), (B,)."""
        return self.energy(x)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.hparams.data_shape)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised log p(x) = -E(x), (B,)."""
        return -self.energy(x)

    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: int | None = None
    ) -> torch.Tensor:
        """n samples of a long chain from uniform noise (`steps`, default `sample_steps`)."""
        shape, box = self.hparams.data_shape, self.sampler.data_range
        x = uniform_noise(n, shape, box, generator, self.device)
        return self.sampler(self.energy, x, self.hparams.sample_steps if steps is None else steps)

    def negative_samples(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chains run from buffer draws, stored back; returns the samples and which were fresh."""
        x, index, fresh = self.buffer.draw(n, generator)
        x = self.sampler(self.energy, x, generator=generator)
        self.buffer.push(x, index)
        return x, fresh

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x = batch[0]
        if self.hparams.data_noise > 0:
            x = x + self.hparams.data_noise * torch.randn_like(x)
        x_fake, fresh = self.negative_samples(len(x))
        e_real, e_fake = self.energy(torch.cat([x, x_fake])).split(len(x))
        self.last_energies = {"e_real": e_real.detach(), "e_fake": e_fake.detach()}
        terms = self.loss(e_real, e_fake)
        terms["fresh"] = fresh.float().mean()
        self.log_terms("train", terms, len(x))
        return terms["loss"]

    def shared_step(self, batch: Any, batch_idx: int, stage: str) -> torch.Tensor:
        """Validation/test: the energies of held-out data (the rest at the epoch's end)."""
        e_real = self.energy(batch[0])
        self._val_energies.append(e_real.detach())
        return e_real.mean()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _epoch_end(self, stage: str) -> None:
        e_real, self._val_energies = torch.cat(self._val_energies), []
        generator = torch.Generator().manual_seed(self.eval_seed)
        n = min(len(self.buffer), max(len(e_real), self.hparams.n_image_samples))
        index = torch.randperm(len(self.buffer), generator=generator)[:n].to(self.device)
        buffered = self.buffer.points[index]
        e_fake = self.energy(buffered)
        terms = self.loss(e_real, e_fake)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, sync_dist=True)
        if stage == "val" and has_image_logger(self.trainer):
            self._log_figures(e_real, e_fake, buffered)

    def _log_figures(
        self,
        e_real: torch.Tensor,
        e_fake: torch.Tensor,
        buffered: torch.Tensor,
    ) -> None:
        """Energy histograms, and for images the buffer's samples (fresh long chains from noise:
        the sample_grid callback)."""
        log_histogram(self.trainer, "energy/data", e_real)
        log_histogram(self.trainer, "energy/buffer_samples", e_fake)
        if not self.is_2d:
            k = self.hparams.n_image_samples
            nrow = max(1, round(math.sqrt(k)))
            log_image_grid(self.trainer, "val/buffer_samples", buffered[:k], nrow=nrow)
