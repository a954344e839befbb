"""What the loss plugins promise beyond their formulas (tested elsewhere against closed forms):
the articles' defaults, the options they are given reaching the computation, the arguments they
refuse and how they say so, integer targets, and seeded interpolation. Written for the mutants
mutmut found alive in src/losses/ (docs/testing.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src.losses.classification import CrossEntropy
from src.losses.contrastive_divergence import ContrastiveDivergence, MEGLoss
from src.losses.elbo import ELBO
from src.losses.gradient_penalty import WassersteinGP, gradient_penalty
from src.losses.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian
from src.losses.margin import MarginLoss, margin_loss
from src.losses.multilabel import (
    BinaryCE,
    MultilabelCE,
    multilabel_categorical_crossentropy,
    multilabel_categorical_crossentropy_soft,
)
from src.losses.nce import NCELoss
from src.losses.smooth import SmoothF1Loss, SoftAccuracyLoss, smooth_f1, smooth_f1_loss, smooth_max
from src.losses.tagging import TagNLL
from src.models.components.crf import CRF


def test_the_defaults_are_the_articles() -> None:
    """WGAN-GP's lambda 10 and WGAN's clip 0.01, the margin loss's m+ 0.9, m- 0.1, lambda 0.5 and
    reconstruction weight 0.0005 (Sabour et al.), MEG's 0.1 and 0.1, CD's energy weight 1, a
    Gaussian likelihood's fixed sigma 0.1, one noise sample per data sample in NCE, hard labels
    for the multilabel loss, the CRF's nll per sentence."""
    gp = WassersteinGP()
    assert (gp.penalty, gp.lam, gp.clip) == ("two_sided", 10.0, 0.01)
    margin = MarginLoss()
    assert (margin.m_plus, margin.m_minus, margin.lam, margin.recon_weight) == (0.9, 0.1, 0.5, 5e-4)
    meg = MEGLoss()
    assert (meg.penalty, meg.lam, meg.alpha) == ("two_sided", 0.1, 0.1)
    assert ContrastiveDivergence().alpha == 1.0
    gaussian = Gaussian()
    assert gaussian.log_sigma.item() == pytest.approx(math.log(0.1))
    assert not gaussian.log_sigma.requires_grad and not list(gaussian.parameters())
    assert NCELoss().noise_ratio == 1 and NCELoss().log_z.item() == 0.0
    assert MultilabelCE().soft is False
    assert ELBO(Bernoulli()).kl == "closed_form"
    assert TagNLL().reduction == "mean"
    assert SmoothF1Loss().eps == 1e-8


def test_gradient_penalty_defaults_to_the_two_sided_one() -> None:
    critic = torch.nn.Linear(3, 1, bias=False)
    critic.weight.data = torch.tensor([[3.0, 0.0, 0.0]])  # |grad D| = 3 everywhere
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    two_sided, norm = gradient_penalty(critic, real, fake)
    one_sided, _ = gradient_penalty(critic, real, fake, kind="one_sided")
    assert torch.allclose(norm, torch.full((4,), 3.0))
    assert torch.allclose(two_sided, torch.full((4,), 4.0))  # (3 - 1)^2
    assert torch.allclose(one_sided, torch.full((4,), 2.0))  # relu(3 - 1)


def test_the_critic_loss_interpolates_with_the_generator_it_is_given() -> None:
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    losses = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        terms = WassersteinGP().critic_loss(critic, real, fake, torch.Generator().manual_seed(7))
        losses.append(terms["gradient_penalty"].item())
    assert losses[0] == losses[1]
    other = WassersteinGP().critic_loss(critic, real, fake, torch.Generator().manual_seed(8))
    assert other["gradient_penalty"].item() != losses[0]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: WassersteinGP(penalty="both"), r"loss\.penalty='both': choose one of two_sided, "),
        (lambda: CrossEntropy(label_smoothing=1.0), r"label_smoothing=1\.0 must be in \[0, 1\)"),
        (lambda: ContrastiveDivergence(alpha=-1.0), "alpha must be >= 0, got -1.0"),
        (lambda: NCELoss(noise_ratio=0), "noise_ratio must be a positive integer, got 0"),
        (lambda: MarginLoss(m_minus=0.5, m_plus=0.5), r"need 0 <= m_minus < m_plus <= 1"),
        (lambda: MarginLoss(m_plus=1.5), r"need 0 <= m_minus < m_plus <= 1, got 0\.1, 1\.5"),
        (lambda: MarginLoss(m_minus=-0.1), r"need 0 <= m_minus < m_plus <= 1"),
        (lambda: ELBO(Bernoulli(), kl="exact"), r"kl='exact': use closed_form or monte_carlo"),
    ],
)
def test_bad_arguments_are_refused_by_name(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_the_bounds_themselves_are_allowed() -> None:
    assert MarginLoss(m_minus=0.0, m_plus=1.0).m_minus == 0.0
    assert NCELoss(noise_ratio=1).noise_ratio == 1
    assert CrossEntropy(label_smoothing=0.0).label_smoothing == 0.0
    with pytest.raises(ValueError, match=r"penalty kind must be 'two_sided' or 'one_sided', got"):
        gradient_penalty(torch.nn.Linear(2, 1), torch.zeros(2, 2), torch.zeros(2, 2), "none")


def test_options_reach_the_computation() -> None:
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    smoothed = CrossEntropy(label_smoothing=0.2)(logits, labels)["loss"]
    assert smoothed == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.2).item())
    assert smoothed.item() != pytest.approx(F.cross_entropy(logits, labels).item())
    scores, targets = torch.rand(5, 3), torch.eye(3)[[0, 1, 2, 0, 1]]
    quarter = MarginLoss(lam=0.25)(scores, targets)["loss"]
    assert quarter == pytest.approx(margin_loss(scores, targets, lam=0.25).mean().item())
    assert quarter.item() != pytest.approx(MarginLoss()(scores, targets)["loss"].item())
    probs, gold = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 0.0]])
    # no gold and (softly) predicted mass 1: 2 * 0 / (1 + eps)
    assert smooth_f1(probs, gold, eps=0.5).item() == 0.0
    assert smooth_f1(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), eps=1.0).item() == (
        pytest.approx(2 * 1 / (2 + 1.0))
    )
    mask = torch.tensor([True, False])
    two = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    masked = smooth_f1_loss(*two, mask=mask, eps=1.0)
    assert masked.item() == pytest.approx(1 - 2 * 0.9 / (1.0 + 1.0 + 1.0))
    big_eps = SmoothF1Loss(eps=10.0)(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))["loss"]
    assert big_eps.item() == pytest.approx(1 - 2 * 0.5 / (2.0 + 10.0))


def test_integer_and_bool_targets_count_as_their_float_values() -> None:
    logits = torch.tensor([[1.5, -0.5, 0.3], [-1.0, 2.0, 0.0]])
    floats = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    for targets in (floats.long(), floats.bool()):
        for loss in (BinaryCE(), SoftAccuracyLoss(), SmoothF1Loss(), MultilabelCE(soft=True)):
            got, want = loss(logits, targets)["loss"], loss(logits, floats)["loss"]
            assert got.dtype == torch.float32 and got.item() == pytest.approx(want.item())
        hard = multilabel_categorical_crossentropy(logits, targets)
        assert hard.item() == pytest.approx(multilabel_categorical_crossentropy(logits, floats))
    soft = multilabel_categorical_crossentropy_soft(logits, floats.long())
    assert soft.item() == pytest.approx(multilabel_categorical_crossentropy(logits, floats).item())


def test_nce_subtracts_log_k_and_counts_the_classifier_by_its_sign() -> None:
    """k = 3: logit = log p - log q - log 3. The data point at logit exactly 0 is not counted as
    told apart, nor the noise point at 0, while those at +-0.5 are (a threshold of 1 would not)."""
    loss = NCELoss(noise_ratio=3)
    noise = torch.distributions.Normal(torch.tensor(0.0), torch.tensor(1.0))
    data = torch.tensor([0.0, 1.0])
    noise_samples = torch.tensor([0.0, 2.0, -2.0, 3.0, -3.0, 0.5])
    wanted = torch.tensor([0.0, 0.5, 0.0, -0.5, 0.5, -0.5, 0.7, -0.2])  # logits, data then noise
    log_q = noise.log_prob(torch.cat([data, noise_samples]))
    points = torch.cat([data, noise_samples]).tolist()
    table = dict(zip(points, wanted + log_q + math.log(3), strict=True))

    def log_density(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([table[v] for v in x.tolist()])

    out = loss(log_density, data, noise, noise_samples)
    # told apart: data at 0.5 (not at 0); noise at -0.5, -0.5, -0.2 (not at 0, 0.5, 0.7)
    assert out["nce_acc"].item() == pytest.approx(4 / 8)
    logit_data, logit_noise = wanted[:2], wanted[2:]
    expected = -F.logsigmoid(logit_data).mean() - 3 * F.logsigmoid(-logit_noise).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"need noise_ratio \* len\(data\) = 6 noise samples, got"):
        loss(log_density, data, noise, noise_samples[:5])


def test_the_likelihoods_means_and_a_learned_sigma() -> None:
    out = torch.tensor([[-2.0, 0.0, 3.0]])
    assert torch.allclose(Gaussian().mean(out), torch.sigmoid(out))
    cb = torch.distributions.ContinuousBernoulli(logits=out)
    assert torch.allclose(ContinuousBernoulli().mean(out), cb.mean)
    learned = Gaussian(sigma=0.5, learn_sigma=True)
    (log_sigma,) = list(learned.parameters())
    assert log_sigma.item() == pytest.approx(math.log(0.5))
    x = torch.tensor([[0.2, 0.4, 0.9]])
    expected = torch.distributions.Normal(torch.sigmoid(out), 0.5).log_prob(x).sum()
    assert learned.log_prob(out, x).item() == pytest.approx(expected.item(), rel=1e-6)
    learned.log_prob(out, x).sum().backward()
    assert log_sigma.grad is not None and log_sigma.grad.item() != 0.0


def test_tag_nll_defaults_to_the_mean_over_sentences() -> None:
    crf = CRF(3)
    emissions, tags = torch.randn(2, 4, 3), torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert TagNLL()(crf, emissions, tags, mask).item() == pytest.approx(
        crf.nll(emissions, tags, mask, reduction="mean").item()
    )


def test_smooth_max_defaults_to_temperature_one() -> None:
    x = torch.tensor([0.0, 1.0, 2.0])
    assert smooth_max(x).item() == pytest.approx(torch.logsumexp(x, 0).item())
