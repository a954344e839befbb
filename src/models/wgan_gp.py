"""WGAN-GP (kexue.fm/archives/4439, 6280; Gulrajani et al. 2017).

The critic minimises  E[D(G(z))] - E[D(x)] + lambda * penalty  (the loss plugin,
`src/losses/gradient_penalty.py`), the generator  -E[D(G(z))], in the alternating loop of
`src/models/adversarial.py`: one critic step every batch, one generator step every `n_critic`-th.

Metrics: `train/critic_loss`, `train/generator_loss`, `train/wasserstein` (E[D(x)] - E[D(G(z))],
the critic's estimate of W1), `train/gradient_penalty`, `train/grad_norm(_max)` at the
interpolates; `val/wasserstein` and `val/grad_norm` on validation batches against fixed noise.
Image quality (`val/fid`, `test/fid`) comes from the SampleQuality callback; on 2-d data the
sample measures (`val/mmd`, `val/modes_covered`, `val/high_quality`) and the critic's contour
from the toy_density callback. TensorBoard: a sample grid from fixed noise every validation epoch
(images).
"""

from __future__ import annotations

from torch import nn

from src.losses.gradient_penalty import WassersteinGP
from src.models.adversarial import AdversarialModule
from src.models.base import OptimizerFactory, SchedulerFactory
from src.models.components.gan_nets import Generator
from src.utils.bounds import NonNegativeInt, PositiveInt


class WGANGP(AdversarialModule):
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
        n_image_samples: NonNegativeInt = 64,
        eval_seed: int = 0,
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
            n_image_samples,
            eval_seed,
        )
