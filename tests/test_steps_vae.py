"""The VAE's steps (src/models/vae.py) with the Gaussian and the Gumbel-softmax latent, driven
through real Trainer runs of a VAE whose encoder and decoder are linear stubs with known weights
(the decoder records every z it decodes): the logged `nelbo`, `recon`, `kl` (and `tau`, and the
test step's `iwae_nll`) and the returned loss against the ELBO of the recorded samples computed
by hand; evaluation noise that differs between batches and repeats on every run; exact one-hot
samples in evaluation; `sample` decoding prior draws; and the reconstruction figure of
`on_validation_epoch_end` showing the first validation batch.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torchvision.utils import make_grid

from src.callbacks.image_evaluation import ReconstructionsCallback
from src.losses.elbo import ELBO
from src.losses.likelihoods import Bernoulli
from src.models.components.latents import GaussianLatent, GumbelSoftmaxLatent
from src.models.vae import VAE
from tests.stubs import IMAGE_SHAPE, RecordingLogger, StepOutputs, build_vae, loader, trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*val_dataloader.*", "ignore:.*log_every_n_steps.*")
LOG_2PI = math.log(2 * math.pi)
LATENTS = {
    "gauss": (lambda: GaussianLatent(dim=3), "closed_form"),
    "gauss-mc": (lambda: GaussianLatent(dim=3), "monte_carlo"),
    "gumbel": (lambda: GumbelSoftmaxLatent(n_vars=2, n_classes=3), "closed_form"),
    "gumbel-mc": (lambda: GumbelSoftmaxLatent(n_vars=2, n_classes=3), "monte_carlo"),
}


def images(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, *IMAGE_SHAPE), generator=gen).float()


def batches(sizes: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images(n, seed + i), torch.zeros(n, dtype=torch.long)) for i, n in enumerate(sizes)]


def make(name: str, **kwargs) -> VAE:
    latent, kl = LATENTS[name]
    return build_vae(latent(), ELBO(Bernoulli(), kl=kl), **kwargs)


def encoder_params(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """The stub encoder's output, from its weights: W x + b."""
    w, b = vae.encoder.linear.weight.detach(), vae.encoder.linear.bias.detach()
    return x.flatten(1) @ w.T + b


def bernoulli_nll(vae: VAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) summed over pixels: softplus(o) - x o with o = W z + b the decoder's logits."""
    w, b = vae.decoder.linear.weight.detach(), vae.decoder.linear.bias.detach()
    o = z @ w.T + b
    return (torch.log1p(torch.exp(-o.abs())) + o.clamp_min(0) - x.flatten(1) * o).sum(-1)


def log_q_and_prior(
    latent: nn.Module, params: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log q(z|x) and log p(z) by hand: diagonal Gaussian vs N(0, I), or the categorical
    probability of argmax z vs the uniform prior."""
    if isinstance(latent, GaussianLatent):
        mu, logvar = params[:, : latent.dim], params[:, latent.dim :]
        log_q = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + LOG_2PI).sum(-1)
        return log_q, -0.5 * (z**2 + LOG_2PI).sum(-1)
    logits = params.view(len(params), latent.n_vars, latent.n_classes)
    log_p = logits - logits.exp().sum(-1, keepdim=True).log()
    chosen = z.view_as(logits).argmax(-1, keepdim=True)
    log_q = log_p.gather(-1, chosen).sum((-1, -2))
    return log_q, torch.full_like(log_q, -latent.n_vars * math.log(latent.n_classes))


def kl_by_hand(vae: VAE, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    latent = vae.latent
    if vae.loss.kl == "monte_carlo":
        log_q, log_prior = log_q_and_prior(latent, params, z)
        return log_q - log_prior
    if isinstance(latent, GaussianLatent):
        mu, logvar = params[:, : latent.dim], params[:, latent.dim :]
        return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    logits = params.view(len(params), latent.n_vars, latent.n_classes)
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return (p * p.log()).sum((-1, -2)) + latent.n_vars * math.log(latent.n_classes)


def elbo_by_hand(vae: VAE, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example recon, kl and nelbo of the sample z the decoder saw."""
    recon = bernoulli_nll(vae, z, x)
    kl = kl_by_hand(vae, encoder_params(vae, x), z)
    return {"recon": recon, "kl": kl, "nelbo": recon + kl}


def assert_one_hot(z: torch.Tensor, latent: GumbelSoftmaxLatent) -> None:
    z = z.view(len(z), latent.n_vars, latent.n_classes)
    assert set(z.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(z.sum(-1), torch.ones(z.shape[:2]))


@pytest.mark.parametrize("stage", ["validate", "test"])
@pytest.mark.parametrize("name", list(LATENTS))
def test_evaluation_terms_are_the_elbo_of_the_sample_the_decoder_saw(stage: str, name: str) -> None:
    """Uneven batches 3 + 1: each logged term is the mean over the 4 examples of its hand value
    at the recorded z, the step returns its batch's mean nelbo. Catches a KL sign or estimator
    mix-up, nelbo = recon - kl, terms logged under each other's names, a mean of batch means,
    and (Gumbel) a relaxed sample in place of the exact one-hot one."""
    vae = make(name, iwae_samples=0)
    data = batches([3, 1], seed=0)
    outputs = StepOutputs()
    run = trainer(callbacks=[outputs])
    metrics = (run.validate if stage == "validate" else run.test)(vae, loader(data), verbose=False)
    prefix = "val" if stage == "validate" else "test"
    seen = vae.decoder.seen
    assert [len(z) for z in seen] == [3, 1]
    if isinstance(vae.latent, GumbelSoftmaxLatent):
        for z in seen:
            assert_one_hot(z, vae.latent)
    by_hand = [elbo_by_hand(vae, x, z) for (x, _), z in zip(data, seen, strict=True)]
    for term in ("nelbo", "recon", "kl"):
        expected = torch.cat([terms[term] for terms in by_hand]).mean().item()
        assert metrics[0][f"{prefix}/{term}"] == pytest.approx(expected, rel=1e-5), term
    returned = outputs.val if stage == "validate" else [out for _, out in outputs.test]
    expected = [terms["nelbo"].mean().item() for terms in by_hand]
    assert [out.item() for out in returned] == pytest.approx(expected, rel=1e-5)
    assert f"{prefix}/tau" not in metrics[0]


@pytest.mark.parametrize("name", ["gauss", "gumbel-mc"])
def test_training_loss_and_epoch_terms_are_the_elbo_of_the_training_samples(name: str) -> None:
    """Batches 2 + 1 + 1, lr 0: each returned loss is its batch's mean nelbo at the recorded
    (relaxed, for Gumbel) z; train/<term> the mean over the 4 examples; train/tau the mean of
    tau(step) = max(0.3, 0.5^step) weighted by batch size. Catches the loss returned being
    another term, tau of a wrong step, or a latent left in its evaluation (one-hot) mode."""
    latent = (
        GaussianLatent(dim=3)
        if name == "gauss"
        else GumbelSoftmaxLatent(n_vars=2, n_classes=3, tau0=1.0, tau_decay=0.5, tau_min=0.3)
    )
    vae = build_vae(latent, ELBO(Bernoulli(), kl=LATENTS[name][1]))
    data = batches([2, 1, 1], seed=5)
    outputs, logger = StepOutputs(), RecordingLogger()
    torch.manual_seed(0)  # the training noise comes from the global generator
    trainer(callbacks=[outputs], logger=logger).fit(vae, loader(data))
    seen = vae.decoder.seen
    by_hand = [elbo_by_hand(vae, x, z) for (x, _), z in zip(data, seen, strict=True)]
    returned = [out.item() for out in outputs.train]
    assert returned == pytest.approx([terms["nelbo"].mean().item() for terms in by_hand], rel=1e-5)
    (epoch_row,) = [row for _, row in logger.rows if "train/nelbo" in row]
    for term in ("nelbo", "recon", "kl"):
        expected = torch.cat([terms[term] for terms in by_hand]).mean().item()
        assert epoch_row[f"train/{term}"] == pytest.approx(expected, rel=1e-5), term
    if name == "gauss":
        assert "train/tau" not in epoch_row
        return
    assert epoch_row["train/tau"] == pytest.approx((2 * 1.0 + 0.5 + 0.3) / 4)
    for z in seen:  # relaxed samples: on the simplex, not one-hot
        z = z.view(len(z), 2, 3)
        torch.testing.assert_close(z.sum(-1), torch.ones(z.shape[:2]))
        assert ((z > 0) & (z < 1)).all()


@pytest.mark.parametrize("stage", ["val", "test"])
@pytest.mark.parametrize("name", ["gauss", "gumbel"])
def test_each_evaluation_batch_draws_its_own_noise_the_same_on_every_run(
    name: str, stage: str
) -> None:
    """Two batches of the same 8 images: different posterior samples (for the ELBO and, in the
    test step, the 2 x 8 of the importance-weighted bound); a second run (another global seed,
    a fresh trainer) the same samples again; another eval_seed other samples. Catches noise
    shared by all batches, drawn from the global RNG, or deaf to eval_seed."""
    x = images(8, seed=1)
    data = [(x, torch.zeros(8)), (x.clone(), torch.zeros(8))]

    def posterior_samples(vae: VAE, global_seed: int) -> dict[int, list[torch.Tensor]]:
        """The decoder's inputs by size: 8 (the ELBO's) and 16 (the bound's), batch by batch."""
        torch.manual_seed(global_seed)
        vae.decoder.seen.clear()
        run = trainer()
        (run.validate if stage == "val" else run.test)(vae, loader(data), verbose=False)
        return {n: [z for z in vae.decoder.seen if len(z) == n] for n in (8, 16)}

    iwae_samples = 2 if stage == "test" else 0
    first = posterior_samples(make(name, iwae_samples=iwae_samples), 0)
    assert [len(first[n]) for n in (8, 16)] == [2, 2 if stage == "test" else 0]
    for samples in first.values():
        assert all(not torch.equal(a, b) for a, b in itertools.pairwise(samples))
    again = posterior_samples(make(name, iwae_samples=iwae_samples), 123)
    for n, samples in first.items():
        assert all(torch.equal(a, b) for a, b in zip(samples, again[n], strict=True))
    other = posterior_samples(make(name, iwae_samples=iwae_samples, eval_seed=7), 0)
    assert not torch.equal(other[8][0], first[8][0])


def separated_gaussian_vae() -> VAE:
    """A Gaussian VAE whose posterior is N(-4, 0.1^2) or N(+4, 0.1^2) in each of 3 dimensions,
    by the first pixel: each sample says which image it is for."""
    vae = build_vae(GaussianLatent(dim=3), iwae_samples=5)
    with torch.no_grad():
        weight = torch.zeros(6, 4)
        weight[:3, 0] = 8.0
        bias = torch.tensor([-4.0, -4.0, -4.0, *([2 * math.log(0.1)] * 3)])
        vae.encoder.linear.weight.copy_(weight)
        vae.encoder.linear.bias.copy_(bias)
    return vae


@pytest.mark.parametrize("name", ["gauss", "gumbel"])
def test_the_test_step_logs_the_importance_weighted_bound_of_its_samples(name: str) -> None:
    """k = 5: -(logsumexp_i log w_i - log 5), log w = log p(x|z_i) + log p(z_i) - log q(z_i|x),
    by hand from the 5 samples the decoder saw for each image, averaged over the 3 images.
    Catches a log q or log p(z) sign, a missing - log k, a mean of log w (the ELBO) in place of
    the logsumexp, and samples paired with the wrong image."""
    if name == "gauss":
        vae = separated_gaussian_vae()
        x = torch.tensor([[0.0, 1, 1, 0], [1.0, 0, 1, 1]]).view(2, *IMAGE_SHAPE)
        data = [(x, torch.zeros(2)), (x[:1], torch.zeros(1))]
    else:
        vae = build_vae(GumbelSoftmaxLatent(n_vars=2, n_classes=3), iwae_samples=5)
        data = [(images(1, seed=s), torch.zeros(1)) for s in (2, 3, 4)]
    (metrics,) = trainer().test(vae, loader(data), verbose=False)
    elbo_samples = [z for z in vae.decoder.seen if len(z) < 5]
    iwae_samples = [z for z in vae.decoder.seen if len(z) >= 5]
    assert [len(z) for z in iwae_samples] == [5 * len(x) for x, _ in data]
    bounds = []
    for (x, _), z in zip(data, iwae_samples, strict=True):
        params = encoder_params(vae, x)
        if name == "gauss":  # the image each sample belongs to: the nearest posterior mean
            owner = (z[:, None, :] - params[None, :, :3]).pow(2).sum(-1).argmin(-1)
        else:
            owner = torch.zeros(len(z), dtype=torch.long)
        log_q, log_prior = log_q_and_prior(vae.latent, params[owner], z)
        log_w = log_prior - log_q - bernoulli_nll(vae, z, x[owner])
        for i in range(len(x)):
            assert (owner == i).sum() == 5
            bounds.append(-(torch.logsumexp(log_w[owner == i], 0) - math.log(5)).item())
    assert metrics["test/iwae_nll"] == pytest.approx(float(np.mean(bounds)), rel=1e-5)
    nelbo = torch.cat(
        [elbo_by_hand(vae, x, z)["nelbo"] for (x, _), z in zip(data, elbo_samples, strict=True)]
    )
    assert metrics["test/nelbo"] == pytest.approx(nelbo.mean().item(), rel=1e-5)


@pytest.mark.parametrize("name", ["gauss", "gumbel"])
def test_sample_decodes_prior_draws_of_the_given_generator(name: str) -> None:
    """Images = sigmoid(decoder logits) at the prior draw z (one-hot for Gumbel); the same seed
    gives the same images, another seed others. Catches logits returned as images, a posterior
    or a global-RNG draw."""
    vae = make(name)
    first = vae.sample(6, torch.Generator().manual_seed(0))
    (z,) = vae.decoder.seen
    w, b = vae.decoder.linear.weight.detach(), vae.decoder.linear.bias.detach()
    torch.testing.assert_close(first, torch.sigmoid(z @ w.T + b).view(6, *IMAGE_SHAPE))
    if name == "gumbel":
        assert_one_hot(z, vae.latent)
    torch.manual_seed(99)
    assert torch.equal(vae.sample(6, torch.Generator().manual_seed(0)), first)
    assert not torch.equal(vae.sample(6, torch.Generator().manual_seed(1)), first)


def test_the_reconstruction_figure_shows_the_first_validation_batch(tmp_path: Path) -> None:
    """val/reconstructions: the first batch's images above their reconstructions, the Bernoulli
    mean at the z decoded for the figure. Catches the last batch kept instead of the first, or
    logits shown in place of the mean image."""
    vae = build_vae(GaussianLatent(dim=3))
    data = batches([4, 4], seed=7)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    figure = ReconstructionsCallback(n=32, nrow=16)
    trainer(logger=logger, callbacks=[figure]).validate(vae, loader(data), verbose=False)
    # the decoder's calls: the first validation batch, the figure's 4 images, the second batch
    z = vae.decoder.seen[1]
    w, b = vae.decoder.linear.weight.detach(), vae.decoder.linear.bias.detach()
    recon = torch.sigmoid(z @ w.T + b).view(-1, *IMAGE_SHAPE)
    expected = make_grid(torch.cat([data[0][0], recon]), nrow=4, padding=2)[0]
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    (image,) = events.Images("val/reconstructions")
    png = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    torch.testing.assert_close(
        torch.from_numpy(png / 255.0).float(), expected, atol=1.01 / 255, rtol=0
    )
