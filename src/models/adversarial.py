"""The alternating critic/generator training that WGAN-GP (`src/models/wgan_gp.py`) and the
generator model of an energy (`src/models/ebm_generator.py`) share, with Lightning manual
optimisation (kexue.fm/archives/4439, 6280, 6331).

Every training batch takes one critic step on the loss plugin's `critic_loss` (real batch against
`negatives(n)`, then its `constrain`); every `n_critic`-th batch also takes one generator step on
`generator_terms(n)["generator_loss"]`. Generator and critic have their own optimiser and
(optional) scheduler, stepped at the end of each epoch. A model sets its generator loss and
negatives by overriding those two methods.

Validation and test: `wasserstein` (E[D(x)] - E[D(G(z))]) and `grad_norm` at interpolates on
validation batches against per-batch seeded noise (the gradient norm turns autograd on for itself,
also under the trainer's inference mode). The sample_grid callback shows the samples of image
models; on 2-d data the toy_density callback measures them (`sample`) and draws the critic
(`critic`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from src.losses.gradient_penalty import WassersteinGP, critic_gradient_norm, interpolate
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.gan_nets import Generator
from src.utils.bounds import PositiveInt
from src.utils.errors import UserError

# Lightning warns that mid-epoch checkpoints of manually optimised models hold the weights after the
# step: that is what resuming needs (the step is counted done in the saved loop state).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


class AdversarialModule(BaseModule):
    loss_task = "adversarial"
    monitor = "val/wasserstein"

    def __init__(
        self,
        generator: Generator,
        critic: nn.Module,
        loss: WassersteinGP,
        optimizer: OptimizerFactory,
        critic_optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        critic_scheduler: SchedulerFactory | None = None,
        n_critic: PositiveInt = 5,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed)
        if n_critic < 1:
            raise UserError(f"model.n_critic={n_critic} must be at least 1.")
        batch_norms = [type(m).__name__ for m in critic.modules() if _is_batch_norm(m)]
        if batch_norms:
            raise UserError(
                f"the critic has {batch_norms[0]}: batch normalisation couples the samples of a "
                "batch and breaks the per-sample gradient penalty; use LayerNorm or no norm."
            )
        self.save_hparams(logger=False)
        self.automatic_optimization = False
        self.generator, self.critic = generator, critic
        self.critic_optimizer_factory, self.critic_scheduler_factory = (
            critic_optimizer,
            critic_scheduler,
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    @property
    def example_shape(self) -> tuple[int, ...] | None:
        """The shape of the generator's samples, when it declares one (`out_shape`)."""
        shape = getattr(self.generator, "out_shape", None)
        return None if shape is None else tuple(shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples G(z): images in [0, 1] or points."""
        with torch.no_grad():
            return self.generator(self.generator.sample_code(n, generator, self.device))

    def configure_optimizers(self) -> Any:
        opt_g = self.optimizer_factory(params=self.generator.parameters())
        opt_c = self.critic_optimizer_factory(params=self.critic.parameters())
        pairs = ((self.scheduler_factory, opt_g), (self.critic_scheduler_factory, opt_c))
        schedulers = [factory(optimizer=opt) for factory, opt in pairs if factory is not None]
        return [opt_g, opt_c], schedulers

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = batch[0]
        opt_g, opt_c = self.optimizers()
        terms = self.loss.critic_loss(self.critic, real, self.negatives(len(real)))
        opt_c.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        opt_c.step()
        self.loss.constrain(self.critic)
        logged_generator_terms: dict[str, torch.Tensor] = {}  # on generator steps only
        if (self.trainer.fit_loop.total_batch_idx + 1) % self.hparams.n_critic == 0:
            self.toggle_optimizer(opt_g)
            generator_terms = self.generator_terms(len(real))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(generator_terms["generator_loss"])
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            logged_generator_terms = {k: v.detach() for k, v in generator_terms.items()}
        terms = {"critic_loss": terms.pop("loss"), **logged_generator_terms, **terms}
        self.log_terms("train", terms, len(real))

    def negatives(self, n: int) -> torch.Tensor:
        """The n generated samples the critic step contrasts with the real batch."""
        return self.sample(n)

    def generator_terms(self, n: int) -> dict[str, torch.Tensor]:
        """The generator's `generator_loss` on n fresh samples, and any terms to log with it."""
        code = self.generator.sample_code(n, device=self.device)
        return {"generator_loss": self.loss.generator_loss(self.critic(self.generator(code)))}

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()

    def shared_step(self, batch: Any, batch_idx: int, stage: str) -> torch.Tensor:
        real, noise = batch[0], self.eval_generator(batch_idx)
        fake = self.sample(len(real), noise)
        x_hat = interpolate(real, fake, noise)
        terms = {
            "wasserstein": self.critic(real).mean() - self.critic(fake).mean(),
            "grad_norm": critic_gradient_norm(self.critic, x_hat).mean(),
        }
        self.log_terms(stage, terms, len(real))
        return terms["wasserstein"]


def _is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)
