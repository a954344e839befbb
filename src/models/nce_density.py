"""An unnormalised 2-d density trained by noise-contrastive estimation (kexue.fm/archives/5617).

The model is log p(x) = G(x) - log Z: G an MLP with SiLU activations, log Z a learned scalar
owned by the loss (`loss=nce`). NCE tells the data from k noise samples per data point drawn from
q, a Gaussian fitted to the training data (its mean, and its covariance times `noise_scale`^2),
with the logit G(x) - log Z - log(k q(x)); at the optimum p is the data density and log Z the
true log ∫ e^G, although no normaliser is ever computed in training.

Its density measures come from the `toy_density` callback, through `log_density` and
`reference_log_densities` (the noise q): at the end of every validation and test epoch, on an
n x n grid over the toy data's box, `kl` = KL(true || model), `kl_noise` the same for q (where the
model starts from, in effect, and what it has to beat), and `log_z_grid`, log ∫ e^G over the box by
the midpoint rule, to set beside the learned `log_z`. TensorBoard gets the true and the learned
density side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.nets import mlp
from src.utils.bounds import PositiveFloat
from src.utils.errors import UserError


class NCEDensity(BaseModule):
    loss_task = "density"
    monitor = "val/loss"

    def __init__(
        self,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        hidden: tuple[int, ...] = (128, 128),
        noise_scale: PositiveFloat = 1.0,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed)
        if noise_scale <= 0:
            raise UserError(f"model.noise_scale={noise_scale} must be positive (try 1.0).")
        self.save_hparams()
        self.net = mlp([2, *hidden, 1], activation=nn.SiLU)
        # q's mean and Cholesky factor, fitted to the training data at the start of fitting and
        # saved with the weights; all zeros until then
        self.register_buffer("noise_loc", torch.zeros(2))
        self.register_buffer("noise_scale_tril", torch.zeros(2, 2))

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (2,)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised G(x) (...,) at points (..., 2)."""
        return self.net(x).squeeze(-1)

    def reference_log_densities(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """The densities the toy-density measures set beside the model's: the noise q."""
        return {"noise": self.noise().log_prob}

    def noise(self) -> MultivariateNormal:
        if not bool(self.noise_scale_tril.diagonal().gt(0).all()):
            raise UserError(
                "NCEDensity has no noise distribution yet: it is fitted to the training data "
                "when training starts, or loaded from an NCEDensity checkpoint."
            )
        return MultivariateNormal(self.noise_loc, scale_tril=self.noise_scale_tril)

    def on_fit_start(self) -> None:
        if bool(self.noise_scale_tril.any()):
            return  # resumed: q comes from the checkpoint
        train_examples = getattr(self.trainer.datamodule, "train_examples", None)
        if train_examples is None:
            raise UserError(
                f"{type(self).__name__} fits its noise to the training data, and "
                f"{type(self.trainer.datamodule).__name__} does not offer it (train_examples()): "
                "use data=toy2d."
            )
        x = train_examples().to(self.noise_loc)
        covariance = torch.cov(x.T) * self.hparams.noise_scale**2
        self.noise_loc.copy_(x.mean(0))
        self.noise_scale_tril.copy_(torch.linalg.cholesky(covariance))

    def shared_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
    ) -> torch.Tensor:
        x, _ = batch
        noise_samples = None
        if stage != "train":  # the same noise on every evaluation
            n_noise = self.loss.noise_ratio * len(x)
            eps = torch.randn(
                n_noise, 2, generator=self.eval_generator(batch_idx), device=self.device
            )
            noise_samples = self.noise_loc + torch.einsum("ij,nj->ni", self.noise_scale_tril, eps)
        terms = self.loss(self.log_density, x, self.noise(), noise_samples)
        terms["log_z"] = self.loss.log_z.detach()
        self.log_terms(stage, terms, len(x))
        return terms["loss"]
