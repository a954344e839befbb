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

from src.models.adversarial import AdversarialModule


class WGANGP(AdversarialModule):
    """The adversarial loop with the WGAN-GP loss plugin (`loss=wgan_gp`): its constructor is the
    loop's (generator, critic, loss, the two optimisers and schedulers, n_critic, ...)."""
