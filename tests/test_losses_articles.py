"""Losses of the articles: multilabel "softmax + CE" and its soft-label version
(src/losses/multilabel.py), smooth max / accuracy / F1 (src/losses/smooth.py) and NCE
(src/losses/nce.py), against direct float64 sums, counts, limits and a model NCE must recover."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from src.losses.multilabel import (
    BinaryCE,
    MultilabelCE,
    multilabel_categorical_crossentropy,
    multilabel_categorical_crossentropy_soft,
    multilabel_predict,
    multilabel_probs,
)
from src.losses.nce import NCELoss, nce_loss
from src.losses.smooth import (
    SmoothF1Loss,
    SoftAccuracyLoss,
    smooth_f1,
    smooth_f1_loss,
    smooth_max,
    soft_accuracy,
)

F64 = torch.float64
MULTILABEL_LOSSES = [multilabel_categorical_crossentropy, multilabel_categorical_crossentropy_soft]


def _logits_and_targets(seed: int, batch: int = 12, classes: int = 7) -> tuple[torch.Tensor, ...]:
    """float64 logits (batch, classes), 0/1 targets; row 0 has no positive, row 1 no negative."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, classes, generator=gen, dtype=F64)
    targets = (torch.rand(batch, classes, generator=gen) < 0.3).to(F64)
    targets[0], targets[1] = 0.0, 1.0
    return logits, targets


def _direct_multilabel_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_neg e^s) + log(1 + sum_pos e^-s), row by row with explicit exp sums."""
    rows = []
    for s, y in zip(logits.tolist(), targets.tolist(), strict=True):
        neg = sum(math.exp(si) for si, yi in zip(s, y, strict=True) if yi == 0)
        pos = sum(math.exp(-si) for si, yi in zip(s, y, strict=True) if yi == 1)
        rows.append(math.log1p(neg) + math.log1p(pos))
    return torch.tensor(rows, dtype=F64)


def _direct_soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_i t_i e^-s_i) + log(1 + sum_i (1 - t_i) e^s_i), explicit exp sums."""
    pos = (targets * (-logits).exp()).sum(-1)
    neg = ((1 - targets) * logits.exp()).sum(-1)
    return pos.log1p() + neg.log1p()


# ---------------------------------------------------------------- multilabel CE


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_multilabel_ce_matches_direct_float64_sums(dtype: torch.dtype) -> None:
    logits, targets = _logits_and_targets(seed=0)
    expected = _direct_multilabel_ce(logits, targets)
    got = multilabel_categorical_crossentropy(logits.to(dtype), targets.to(dtype), reduction="none")
    assert got.shape == (12,) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), expected, atol=tol, rtol=tol)
    mean = multilabel_categorical_crossentropy(logits, targets)
    total = multilabel_categorical_crossentropy(logits, targets, reduction="sum")
    torch.testing.assert_close(mean, expected.mean())
    torch.testing.assert_close(total, expected.sum())


def test_multilabel_ce_rows_without_positives_or_negatives() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0]], dtype=F64)
    targets = torch.tensor([[0, 0, 0], [1, 1, 1]], dtype=F64)
    expected = torch.stack([logits[0].exp().sum().log1p(), (-logits[1]).exp().sum().log1p()])
    for loss in MULTILABEL_LOSSES:
        torch.testing.assert_close(loss(logits, targets, reduction="none"), expected)
    # bool targets are read the same as 0/1 floats
    got = multilabel_categorical_crossentropy(logits, targets.bool(), reduction="none")
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("loss", MULTILABEL_LOSSES)
def test_multilabel_ce_is_finite_at_huge_logits_and_has_the_analytic_limits(loss) -> None:
    big = 1e4
    targets = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1]])
    logits = big * (2 * targets.float() - 1)  # every class right by a margin of 1e4
    logits[3, 1] = big  # one negative wrong by 1e4
    logits[4, 1] = logits[4, 2] = big  # two negatives wrong
    logits[4, 0] = -big  # and one positive
    logits.requires_grad_(True)
    got = loss(logits, targets.float(), reduction="none")
    got.sum().backward()
    assert torch.isfinite(got).all() and torch.isfinite(logits.grad).all()
    expected = torch.tensor([0.0, 0.0, 0.0, big, (big + math.log(2)) + big])
    torch.testing.assert_close(got.detach(), expected, atol=4e-3, rtol=0)  # float32 at 2e4


@pytest.mark.parametrize("loss", MULTILABEL_LOSSES)
def test_multilabel_ce_gradient_matches_finite_differences(loss) -> None:
    logits, targets = _logits_and_targets(seed=1, batch=5, classes=4)
    if loss is multilabel_categorical_crossentropy_soft:  # soft labels, with some exact 0s and 1s
        targets = torch.where(targets.bool(), targets, torch.rand(5, 4, dtype=F64))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: loss(s, targets, reduction="none"), (logits,))


def test_soft_ce_equals_hard_ce_on_01_labels_and_differs_on_soft_ones() -> None:
    logits, targets = _logits_and_targets(seed=2)
    hard = multilabel_categorical_crossentropy(logits, targets, reduction="none")
    soft = multilabel_categorical_crossentropy_soft(logits, targets, reduction="none")
    torch.testing.assert_close(soft, hard, atol=0, rtol=0)
    smoothed = 0.9 * targets + 0.05  # label smoothing
    soft_smoothed = multilabel_categorical_crossentropy_soft(logits, smoothed, reduction="none")
    assert (soft_smoothed - hard).abs().min() > 1e-3


def test_soft_ce_matches_direct_sums_and_is_minimal_at_sigmoid_2s() -> None:
    gen = torch.Generator().manual_seed(3)
    targets = torch.rand(6, 5, generator=gen, dtype=F64)
    logits = 2 * torch.randn(6, 5, generator=gen, dtype=F64)
    got = multilabel_categorical_crossentropy_soft(logits, targets, reduction="none")
    torch.testing.assert_close(got, _direct_soft_ce(logits, targets), atol=1e-12, rtol=1e-12)
    # 9064: the minimum is at t = sigmoid(2 s), i.e. s = logit(t) / 2, where the gradient vanishes
    optimum = (0.5 * torch.logit(targets)).requires_grad_(True)
    multilabel_categorical_crossentropy_soft(optimum, targets, reduction="sum").backward()
    torch.testing.assert_close(optimum.grad, torch.zeros_like(optimum), atol=1e-12, rtol=0)
    torch.testing.assert_close(multilabel_probs(optimum.detach()), targets)
    nudged = optimum.detach() + 0.1 * torch.randn(6, 5, generator=gen, dtype=F64)
    at_optimum = multilabel_categorical_crossentropy_soft(optimum.detach(), targets, "none")
    assert (multilabel_categorical_crossentropy_soft(nudged, targets, "none") > at_optimum).all()


def test_multilabel_predict_thresholds_at_zero_and_bad_reduction_raises() -> None:
    logits = torch.tensor([[-2.0, 0.0, 1e-6, 3.0]])
    assert multilabel_predict(logits).tolist() == [[False, False, True, True]]
    with pytest.raises(ValueError, match="reduction"):
        multilabel_categorical_crossentropy(logits, torch.ones_like(logits), reduction="avg")


def test_multilabel_ce_plugin_is_the_batch_mean() -> None:
    logits, targets = _logits_and_targets(seed=4)
    assert MultilabelCE.task == "multilabel"
    expected = _direct_multilabel_ce(logits, targets).mean()
    torch.testing.assert_close(MultilabelCE()(logits, targets)["loss"], expected)
    torch.testing.assert_close(MultilabelCE(soft=True)(logits, targets)["loss"], expected)
    soft_targets = 0.8 * targets + 0.1
    got = MultilabelCE(soft=True)(logits, soft_targets)["loss"]
    torch.testing.assert_close(got, _direct_soft_ce(logits, soft_targets).mean())


def test_binary_ce_is_torch_bce_with_logits_summed_over_classes() -> None:
    logits, targets = _logits_and_targets(seed=5)
    assert BinaryCE.task == "multilabel"
    got = BinaryCE()(logits, targets)["loss"]
    torch.testing.assert_close(
        got, torch.nn.BCEWithLogitsLoss(reduction="sum")(logits, targets) / 12
    )
    p = torch.sigmoid(logits)
    direct = -(targets * p.log() + (1 - targets) * (1 - p).log()).sum(-1).mean()
    torch.testing.assert_close(got, direct)


# ---------------------------------------------------------------- smooth max, accuracy, F1


@pytest.mark.parametrize("temperature", [0.01, 0.3, 1.0, 5.0])
def test_smooth_max_bounds(temperature: float) -> None:
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(6), dtype=F64)
    got = smooth_max(x, temperature)
    torch.testing.assert_close(got, temperature * (x / temperature).exp().sum(-1).log())
    top = x.max(-1).values
    assert (got >= top).all()  # > in exact arithmetic, but e^{-gap / T} underflows for small T
    assert (got > top).all() if temperature >= 0.3 else (got > top).any()
    assert (got <= top + temperature * math.log(8) + 1e-12).all()
    # the upper bound is attained when all entries are equal, the lower one with a single entry
    torch.testing.assert_close(
        smooth_max(x[:, :1].expand(50, 8), temperature), x[:, 0] + temperature * math.log(8)
    )
    torch.testing.assert_close(smooth_max(x[:, :1], temperature), x[:, 0])


def test_smooth_max_tends_to_max_as_temperature_goes_to_zero() -> None:
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(7), dtype=F64)
    top = x.max(dim=1).values
    gaps = [(smooth_max(x, t, dim=1) - top).abs().max().item() for t in (1.0, 0.1, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * math.log(6)
    assert gaps[0] > 0.1
    with pytest.raises(ValueError, match="temperature"):
        smooth_max(x, 0.0)


def _f1_by_counting(pred: torch.Tensor, gold: torch.Tensor) -> float:
    tp = int((pred & gold).sum())
    fp = int((pred & ~gold).sum())
    fn = int((~pred & gold).sum())
    return 2 * tp / (2 * tp + fp + fn)


def test_smooth_f1_is_the_true_f1_for_01_predictions() -> None:
    gen = torch.Generator().manual_seed(8)
    gold = torch.rand(32, 9, generator=gen) < 0.3
    pred = torch.rand(32, 9, generator=gen) < 0.4
    got = smooth_f1(pred.to(F64), gold.to(F64))
    assert got.item() == pytest.approx(_f1_by_counting(pred, gold), abs=1e-9)
    assert smooth_f1(gold.to(F64), gold.to(F64)).item() == pytest.approx(1.0, abs=1e-9)
    assert smooth_f1(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_smooth_f1_lies_in_unit_interval_and_its_loss_is_one_minus_it() -> None:
    gen = torch.Generator().manual_seed(9)
    for _ in range(20):
        probs = torch.rand(16, 5, generator=gen, dtype=F64)
        gold = (torch.rand(16, 5, generator=gen) < 0.5).to(F64)
        f1 = smooth_f1(probs, gold)
        assert 0 <= f1 <= 1
        torch.testing.assert_close(smooth_f1_loss(probs, gold), 1 - f1)


def test_smooth_f1_and_soft_accuracy_respect_the_mask() -> None:
    """Tagging shapes: softmax marginals (B, T, K), one-hot tags, mask (B, T) over the padding."""
    gen = torch.Generator().manual_seed(10)
    probs = torch.randn(4, 6, 3, generator=gen, dtype=F64).softmax(-1)
    tags = F.one_hot(torch.randint(3, (4, 6), generator=gen), 3).to(F64)
    mask = torch.arange(6) < torch.tensor([[6], [4], [2], [5]])
    garbage = torch.where(mask.unsqueeze(-1), probs, torch.rand(4, 6, 3, generator=gen, dtype=F64))
    for metric in (smooth_f1, soft_accuracy):
        expected = metric(probs[mask], tags[mask])  # the unmasked positions only, (n, K)
        torch.testing.assert_close(metric(garbage, tags, mask), expected)
        torch.testing.assert_close(metric(garbage, tags, mask.to(F64)), expected)
        assert (metric(garbage, tags) - expected).abs() > 1e-3  # the garbage counts without it


def test_soft_accuracy_of_one_hot_probabilities_is_the_accuracy() -> None:
    gen = torch.Generator().manual_seed(11)
    labels = torch.randint(5, (40,), generator=gen)
    guesses = torch.where(torch.rand(40, generator=gen) < 0.6, labels, torch.randint(5, (40,)))
    got = soft_accuracy(F.one_hot(guesses, 5).to(F64), F.one_hot(labels, 5))
    assert got.item() == pytest.approx((guesses == labels).double().mean().item(), abs=1e-12)
    probs = torch.randn(40, 5, generator=gen).softmax(-1)
    expected = probs[torch.arange(40), labels].mean()
    torch.testing.assert_close(soft_accuracy(probs, F.one_hot(labels, 5)), expected)


def test_smooth_plugins_apply_sigmoid_to_logits() -> None:
    logits, targets = _logits_and_targets(seed=12)
    assert SmoothF1Loss.task == SoftAccuracyLoss.task == "multilabel"
    p = torch.sigmoid(logits)
    f1_loss = SmoothF1Loss()(logits, targets)["loss"]
    torch.testing.assert_close(f1_loss, 1 - 2 * (p * targets).sum() / (p + targets).sum())
    acc_loss = SoftAccuracyLoss()(logits, targets)["loss"]
    torch.testing.assert_close(acc_loss, 1 - (targets * p + (1 - targets) * (1 - p)).mean())
    right = 30 * (2 * targets - 1)  # confident and right: both losses vanish
    assert SmoothF1Loss()(right, targets)["loss"] < 1e-9
    assert SoftAccuracyLoss()(right, targets)["loss"] < 1e-9


# ---------------------------------------------------------------- NCE


def test_nce_loss_is_the_binary_cross_entropy_of_data_against_noise() -> None:
    gen = torch.Generator().manual_seed(13)
    k, n = 3, 10
    log_model_data, log_q_data = torch.randn(2, n, generator=gen, dtype=F64)
    log_model_noise, log_q_noise = torch.randn(2, k * n, generator=gen, dtype=F64)
    logits = torch.cat([log_model_data - log_q_data, log_model_noise - log_q_noise]) - math.log(k)
    labels = torch.cat([torch.ones(n, dtype=F64), torch.zeros(k * n, dtype=F64)])
    expected = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / n
    got = nce_loss(log_model_data, log_model_noise, log_q_data, log_q_noise, k)
    torch.testing.assert_close(got, expected)


DATA_MEAN, DATA_STD, NOISE_STD, K = 1.5, 0.7, 2.0, 4
TRUE_LOG_Z = math.log(math.sqrt(2 * math.pi) * DATA_STD)


def _gaussian_energy(
    mean: torch.Tensor, log_std: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """G(x) = -(x - m)^2 / (2 s^2): a Gaussian log-density without its normaliser."""
    return lambda x: -((x - mean) ** 2) / (2 * torch.exp(2 * log_std))


def _quantiles(mean: float, std: float, n: int) -> torch.Tensor:
    """n stratified points of N(mean, std^2): their means are quadratures of the expectations."""
    return mean + std * torch.special.ndtri((torch.arange(n, dtype=F64) + 0.5) / n)


@pytest.mark.parametrize(
    ("mean", "log_std", "log_z", "zero"),
    [
        (DATA_MEAN, math.log(DATA_STD), TRUE_LOG_Z, True),
        (DATA_MEAN + 0.1, math.log(DATA_STD), TRUE_LOG_Z, False),
        (DATA_MEAN, math.log(DATA_STD) + 0.1, TRUE_LOG_Z, False),
        (DATA_MEAN, math.log(DATA_STD), TRUE_LOG_Z + 0.1, False),
    ],
)
def test_nce_gradient_vanishes_in_expectation_at_the_truth(
    mean: float, log_std: float, log_z: float, zero: bool
) -> None:
    """At the truth the NCE integrand vanishes pointwise, p_d (1 - h) = k q h. The quadrature of
    20k / 80k stratified points leaves |grad| ~ 7e-5 there (O(1/n)); 0.1 off in any parameter the
    largest component is above 0.07."""
    params = [torch.tensor(v, dtype=F64, requires_grad=True) for v in (mean, log_std, log_z)]
    energy = _gaussian_energy(params[0], params[1])
    data, noise = _quantiles(DATA_MEAN, DATA_STD, 20_000), _quantiles(0.0, NOISE_STD, 80_000)
    q = Normal(0.0, NOISE_STD)
    loss = nce_loss(
        energy(data) - params[2], energy(noise) - params[2], q.log_prob(data), q.log_prob(noise), K
    )
    grad = torch.stack(torch.autograd.grad(loss, params)).abs().max().item()
    assert grad < 1e-3 if zero else grad > 5e-2


def test_nce_recovers_a_gaussian_and_its_normaliser() -> None:
    """Data N(1.5, 0.7^2), noise N(0, 2^2), k = 4, fresh samples every step.

    Over seeds 0-9 the final estimates scatter with standard deviations of 0.003 (mean, std) and
    0.007 (log Z) and never miss by more than 0.011, so a tolerance of 0.05 is about 7 standard
    deviations of the estimator's noise, while the mistakes it guards against move the answer
    further: dropping log k from the logit shifts log Z by log 4 = 1.39.
    """
    torch.manual_seed(0)
    mean = torch.nn.Parameter(torch.tensor(0.0))
    log_std = torch.nn.Parameter(torch.tensor(0.0))
    nce = NCELoss(noise_ratio=K)
    assert nce.task == "density"
    steps = 3000
    opt = torch.optim.Adam([mean, log_std, *nce.parameters()], lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    data, noise = Normal(DATA_MEAN, DATA_STD), Normal(0.0, NOISE_STD)
    for _ in range(steps):
        out = nce(_gaussian_energy(mean, log_std), data.sample((256,)), noise)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        sched.step()
    assert mean.item() == pytest.approx(DATA_MEAN, abs=0.05)
    assert log_std.exp().item() == pytest.approx(DATA_STD, abs=0.05)
    assert nce.log_z.item() == pytest.approx(TRUE_LOG_Z, abs=0.05)


def test_nce_plugin_accuracy_and_noise_ratio() -> None:
    torch.manual_seed(14)
    noise = Normal(0.0, 1.0)
    data = torch.full((8,), 5.0)  # log q(5) = -13.4; the noise stays below 4 (seeded)
    far_is_data = NCELoss(noise_ratio=3)(lambda x: torch.where(x > 4, 100.0, -100.0), data, noise)
    far_is_noise = NCELoss(noise_ratio=3)(lambda x: torch.where(x > 4, -100.0, 100.0), data, noise)
    assert far_is_data["nce_acc"].item() == 1.0 and far_is_noise["nce_acc"].item() == 0.0
    assert far_is_data["loss"].item() < 1e-6 < far_is_noise["loss"].item()
    with pytest.raises(ValueError, match="noise_ratio"):
        NCELoss(noise_ratio=0)
