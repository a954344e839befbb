"""A model from outside the project: a 2-d Gaussian fitted by maximum likelihood.

    log p(x) = sum_d log N(x_d; mu_d, sigma_d^2),    loss = -mean_x log p(x)

It is a plain LightningModule. Offering `log_density(x)` and `sample(n, generator)` is all the
project's toy-density callback needs to measure it against the data's true density (grid KL,
MMD, modes) and draw its figures.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class Gaussian2d(pl.LightningModule):
    # what the run checkpoints and stops on (`monitor: model`), and the data it reads
    monitor, monitor_mode = "val/loss", "min"
    example_shape = (2,)

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.mu = torch.nn.Parameter(torch.zeros(2))
        self.log_sigma = torch.nn.Parameter(torch.zeros(2))

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), (N, 2) -> (N,)."""
        normal = torch.distributions.Normal(self.mu, self.log_sigma.exp())
        return normal.log_prob(x).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, 2, generator=generator, device=self.mu.device)
        return (self.mu + self.log_sigma.exp() * eps).detach()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        loss = -self.log_density(batch[0]).mean()
        self.log(f"{stage}/loss", loss, on_epoch=True, on_step=False)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], i: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], i: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], i: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
