"""An unnormalised 2-d density trained by noise-contrastive estimation (kexue.fm/archives/5617).

The model is log p(x) = G(x) - log Z: G an MLP with SiLU activations, log Z a learned scalar
owned by the loss (`loss=nce`). NCE tells the data from k noise samples per data point drawn from
q, a Gaussian fitted to the training data (its mean, and its covariance times `noise_scale`^2),
with the logit G(x) - log Z - log(k q(x)); at the optimum p is the data density and log Z the
true log ∫ e^G, although no normaliser is ever computed in training.

At the end of every validation and test epoch the model meets the toy data's true density
(src/data/toy2d.py) on an n x n grid over its box:
- `kl`: KL(true || model), both normalised numerically over the grid cells (`kl_on_grid`);
- `kl_noise`: the same for q, where the model starts from (in effect) and what it has to beat;
- `log_z`: the learned log Z, and `log_z_grid`: log ∫ e^G over the box by the midpoint rule.
TensorBoard gets the true and the learned density side by side.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from src.evaluation.figures import density_figure
from src.metrics.toy2d import KnownDensity, grid_points, kl_on_grid
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.nets import mlp
from src.utils.bounds import PositiveFloat, PositiveInt
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure


class NCEDensity(BaseModule):
    loss_task = "density"
    monitor = "val/kl"

    def __init__(
        self,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        hidden: tuple[int, ...] = (128, 128),
        noise_scale: PositiveFloat = 1.0,
        grid_size: PositiveInt = 200,
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
        self._true_grid: torch.Tensor | None = None

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised G(x) (...,) at points (..., 2)."""
        return self.net(x).squeeze(-1)

    def noise(self) -> MultivariateNormal:
        if not bool(self.noise_scale_tril.diagonal().gt(0).all()):
            raise UserError(
                "NCEDensity has no noise distribution yet: it is fitted to the training data "
                "when training starts, or loaded from an NCEDensity checkpoint."
            )
        return MultivariateNormal(self.noise_loc, scale_tril=self.noise_scale_tril)

    def _distribution(self) -> KnownDensity:
        distribution = getattr(self.trainer.datamodule, "distribution", None)
        if not isinstance(distribution, KnownDensity):
            raise UserError(
                f"{type(self).__name__} compares with a known density: use data=toy2d "
                "(data.name=8gaussians|rings|checkerboard|moons)."
            )
        return distribution

    def on_fit_start(self) -> None:
        self._distribution()
        if bool(self.noise_scale_tril.any()):
            return  # resumed: q comes from the checkpoint
        x = self.trainer.datamodule.data_train[0].to(self.noise_loc)
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

    def on_validation_epoch_end(self) -> None:
        self._grid_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._grid_metrics("test")

    def _grid_metrics(self, stage: str) -> None:
        distribution = self._distribution()
        n = self.hparams.grid_size
        lo, hi = distribution.bounds
        _, _, points = grid_points(distribution.bounds, n)
        if self._true_grid is None:
            self._true_grid = distribution.log_prob(points)
        with torch.no_grad():
            log_g = self.log_density(points.to(self.device, torch.float32)).double().cpu()
            log_q = self.noise().log_prob(points.to(self.noise_loc)).double().cpu()
        cell_area = ((hi - lo) / n) ** 2
        metrics = {
            "kl": kl_on_grid(self._true_grid, log_g),
            "kl_noise": kl_on_grid(self._true_grid, log_q),
            "log_z_grid": float(log_g.logsumexp((0, 1))) + math.log(cell_area),
        }
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=True)
        if has_image_logger(self.trainer):
            figure = density_figure(self._true_grid, log_g, distribution.bounds, "NCE model")
            log_figure(self.trainer, f"{stage}/density", figure)
