"""Variational autoencoder (kexue.fm/archives/5253, 5343, 7725; discrete latents 6705).

Training minimises the negative ELBO in nats per example,
    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z)),
with z drawn by the latent's reparameterisation (Gaussian or Gumbel-softmax). The test step also
reports the importance-weighted bound (Burda et al. 2016) with k samples,
    -log p(x) <= -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x),
which equals the single-sample ELBO for k = 1 and tightens as k grows.

Evaluation offers `sample(n, generator)`, `reconstruct(x, generator)`, `encode(x)` and
`decode(z)` to the image callbacks (`src/callbacks/image_evaluation.py`: the sample grid, the
reconstructions, the 2-d latent's scatter and manifold).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from src.losses.elbo import ELBO
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.utils.bounds import NonNegativeInt

NetFactory = Callable[..., nn.Module]


class VAE(BaseModule):
    loss_task = "vae"
    monitor = "val/nelbo"
    compiled = ("encoder", "decoder")

    def __init__(
        self,
        encoder: NetFactory,
        decoder: NetFactory,
        latent: nn.Module,
        loss: ELBO,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        image_shape: Sequence[int] = (1, 28, 28),
        iwae_samples: NonNegativeInt = 100,
        eval_seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed, compile)
        self.save_hparams(logger=False)
        self.latent = latent
        self.encoder = encoder(image_shape=image_shape, out_dim=latent.param_dim)
        self.decoder = decoder(image_shape=image_shape, in_dim=latent.dim)

    @property
    def likelihood(self) -> nn.Module:
        return self.loss.likelihood

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean reconstruction of x through one posterior sample."""
        z = self.latent.rsample(self.encoder(x), self.global_step, generator)
        return self.likelihood.mean(self.decoder(z))

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-example `nelbo`, `recon`, `kl` from one posterior sample."""
        params = self.encoder(x)
        z = self.latent.rsample(params, self.global_step, generator)
        kl = self.latent.kl(params, z, self.loss.kl)
        return self.loss(x, self.decoder(z), kl)

    @torch.no_grad()
    def iwae_nll(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        max_batch: int = 20_000,
    ) -> torch.Tensor:
        """Per-example importance-weighted bound on -log p(x) with k samples, in nats."""
        params = self.encoder(x)
        chunk = max(1, max_batch // len(x))
        log_w = []
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            p = params.expand(c, *params.shape).reshape(c * len(x), -1)
            xs = x.expand(c, *x.shape).reshape(c * len(x), *x.shape[1:])
            z = self.latent.rsample(p, self.global_step, generator)
            lw = (
                self.likelihood.log_prob(self.decoder(z), xs)
                + self.latent.log_prior(z)
                - self.latent.log_q(p, z)
            )
            log_w.append(lw.view(c, len(x)))
        return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.hparams.image_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the prior: the likelihood's mean at z ~ p(z)."""
        z = self.latent.prior_sample(n, generator=generator).to(self.device)
        return self.decode(z)

    @torch.no_grad()
    def reconstruct(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The mean reconstruction of x through one posterior sample."""
        return self(x, generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior means E_q[z | x] (for a Gumbel latent, the class probabilities)."""
        return self.latent.mean(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z): the image a code stands for."""
        return self.likelihood.mean(self.decoder(z))

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> torch.Tensor:
        x = batch[0]
        generator = None if stage == "train" else self.eval_generator(batch_idx)
        terms = self.elbo_terms(x, generator)
        means = {name: value.mean() for name, value in terms.items()}
        if stage == "train" and hasattr(self.latent, "temperature"):
            means["tau"] = torch.tensor(self.latent.temperature(self.global_step))
        if stage == "test" and self.hparams.iwae_samples > 0:
            means["iwae_nll"] = self.iwae_nll(x, self.hparams.iwae_samples, generator).mean()
        self.log_terms(stage, means, len(x))
        return means["nelbo"]
