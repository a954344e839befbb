"""The VAE's probability maths against closed forms, torch.distributions and exact integrals."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from src.losses.elbo import ELBO
from src.losses.kl import kl_categorical_uniform, kl_normal_standard
from src.losses.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian
from src.models.components.latents import GaussianLatent, GumbelSoftmaxLatent
from src.models.components.nets import MLPDecoder, MLPEncoder
from src.models.vae import VAE


def test_gaussian_kl_closed_form_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_normal_standard(mu, logvar), expected)


def test_categorical_kl_matches_torch_distributions() -> None:
    logits = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    uniform = Categorical(logits=torch.zeros(5))
    expected = kl_divergence(Categorical(logits=logits), uniform).sum(-1)
    torch.testing.assert_close(kl_categorical_uniform(logits), expected)


@pytest.mark.parametrize(
    "latent",
    [GaussianLatent(dim=3), GumbelSoftmaxLatent(n_vars=3, n_classes=4)],
    ids=["gauss", "gumbel"],
)
def test_monte_carlo_kl_is_unbiased_for_closed_form(latent: torch.nn.Module) -> None:
    """The mean of the single-sample estimator over many draws is the closed form (4 s.e.)."""
    torch.manual_seed(0)
    params = torch.randn(2, latent.param_dim)
    n = 200_000
    p = params.repeat(n, 1)
    mc = latent.kl(p, latent.rsample(p), "monte_carlo").view(n, 2)
    closed = latent.kl(params, latent.rsample(params), "closed_form")
    se = mc.std(0) / math.sqrt(n)
    assert torch.all((mc.mean(0) - closed).abs() < 4 * se + 1e-4), (mc.mean(0), closed)


def test_gaussian_log_q_matches_normal_log_prob() -> None:
    latent = GaussianLatent(dim=4)
    params, z = torch.randn(3, 8), torch.randn(3, 4)
    mu, logvar = params.chunk(2, -1)
    expected = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(latent.log_q(params, z), expected)
    torch.testing.assert_close(latent.log_prior(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_gumbel_softmax_samples_lie_on_the_simplex_and_follow_the_probabilities() -> None:
    torch.manual_seed(0)
    latent = GumbelSoftmaxLatent(n_vars=1, n_classes=5, tau0=0.7)
    logits = torch.tensor([[2.0, 0.5, 0.0, -1.0, 1.0]])
    n = 200_000
    for training in (True, False):
        latent.train(training)
        z = latent.rsample(logits.expand(n, 5), step=0)
        assert torch.all(z >= 0) and torch.allclose(z.sum(-1), torch.ones(n), atol=1e-5)
        freq = torch.bincount(z.argmax(-1), minlength=5).float() / n
        probs = logits.softmax(-1)[0]
        se = (probs * (1 - probs) / n).sqrt()
        assert torch.all((freq - probs).abs() < 5 * se), (freq, probs)
    assert set(z.unique().tolist()) == {0.0, 1.0}  # evaluation: exact one-hot samples


def test_gumbel_straight_through_is_one_hot_forward_with_soft_gradient() -> None:
    latent = GumbelSoftmaxLatent(n_vars=2, n_classes=3, hard=True)
    logits = torch.randn(4, 6, requires_grad=True)
    z = latent.rsample(logits, step=0)
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    (z * torch.randn(4, 6)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gumbel_temperature_schedule() -> None:
    latent = GumbelSoftmaxLatent(tau0=1.0, tau_decay=0.999, tau_min=0.5)
    assert latent.temperature(0) == 1.0
    assert latent.temperature(100) == pytest.approx(0.999**100)
    assert latent.temperature(10_000) == 0.5
    with pytest.raises(ValueError, match="tau_min"):
        GumbelSoftmaxLatent(tau0=0.1, tau_min=0.5)


def _tiny_vae(latent: torch.nn.Module, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(
        encoder=partial(MLPEncoder, hidden=[16]),
        decoder=partial(MLPDecoder, hidden=[16]),
        latent=latent,
        loss=ELBO(Bernoulli()),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        image_shape=(1, 2, 2),
    ).eval()


X = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]).view(
    3, 1, 2, 2
)


def _exact_nll_gaussian(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) = -log integral p(x|z) N(z; 0, 1) dz for a 1-d latent, on a fine grid."""
    z = torch.linspace(-10, 10, 20_001).unsqueeze(-1)
    with torch.no_grad():
        out = vae.decoder(z)
    log_joint = torch.stack([Bernoulli().log_prob(out, xi.expand_as(out)) for xi in x])
    log_joint = log_joint + Normal(0.0, 1.0).log_prob(z.squeeze(-1))
    return -(torch.logsumexp(log_joint, -1) + math.log(z[1, 0] - z[0, 0]))


def _exact_nll_categorical(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) = -log sum over every configuration of the categorical latent (uniform prior)."""
    lat = vae.latent
    configs = torch.tensor(list(itertools.product(range(lat.n_classes), repeat=lat.n_vars)))
    z = torch.nn.functional.one_hot(configs, lat.n_classes).float().flatten(-2)
    with torch.no_grad():
        out = vae.decoder(z)
    log_joint = torch.stack([Bernoulli().log_prob(out, xi.expand_as(out)) for xi in x])
    return -(torch.logsumexp(log_joint, -1) - lat.n_vars * math.log(lat.n_classes))


@pytest.mark.parametrize(
    ("latent", "exact"),
    [
        (GaussianLatent(dim=1), _exact_nll_gaussian),
        (GumbelSoftmaxLatent(n_vars=2, n_classes=3), _exact_nll_categorical),
    ],
    ids=["gauss", "gumbel"],
)
def test_iwae_bound_lies_between_exact_nll_and_elbo(latent: torch.nn.Module, exact) -> None:
    """E[IWAE_1] = -ELBO >= E[IWAE_k] >= -log p(x), and IWAE_k -> -log p(x) as k grows."""
    vae = _tiny_vae(latent)
    true_nll = exact(vae, X)
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    with torch.no_grad():
        xs = X.repeat(n, 1, 1, 1)
        terms = vae.elbo_terms(xs, gen)
        nelbo = terms["nelbo"].view(n, 3).mean(0)
        iwae1 = vae.iwae_nll(xs, 1, gen).view(n, 3).mean(0)
        iwae16 = vae.iwae_nll(X.repeat(2000, 1, 1, 1), 16, gen).view(2000, 3).mean(0)
        iwae_big = vae.iwae_nll(X, 20_000, gen)
    assert torch.all(nelbo > true_nll + 1e-3), "the ELBO must be a strict bound here"
    torch.testing.assert_close(iwae1, nelbo, atol=0.02, rtol=0)
    assert torch.all(iwae16 < nelbo - 1e-3) and torch.all(iwae16 > true_nll - 0.01)
    torch.testing.assert_close(iwae_big, true_nll, atol=0.01, rtol=0)


def test_likelihoods_match_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    out, x = torch.randn(2, 1, 3, 3, generator=gen), torch.rand(2, 1, 3, 3, generator=gen)
    xb = torch.bernoulli(x, generator=gen)
    bern = torch.distributions.Bernoulli(logits=out).log_prob(xb).flatten(1).sum(-1)
    torch.testing.assert_close(Bernoulli().log_prob(out, xb), bern)
    gauss = Normal(torch.sigmoid(out), 0.2).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(Gaussian(sigma=0.2).log_prob(out, x), gauss)
    cb = torch.distributions.ContinuousBernoulli(logits=out).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(ContinuousBernoulli().log_prob(out, x), cb)


def test_learned_sigma_is_a_trained_parameter() -> None:
    assert [n for n, _ in Gaussian(learn_sigma=True).named_parameters()] == ["log_sigma"]
    assert list(Gaussian(learn_sigma=False).parameters()) == []
