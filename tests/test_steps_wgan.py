"""What `WGANGP`'s steps do with the maths: with a linear critic D(x) = w . x + c, whose gradient is
w everywhere, and an affine generator G(z) = z A^T + b, one critic step and one generator step are
plain SGD steps whose results the tests compute by hand (the critic step for each penalty kind,
weight clipping included), and so are the logged training terms and the evaluation's Wasserstein
estimate. Evaluation draws its own noise for every batch, the same on every run; the gradient norm
it reports is taken at interpolates between real and generated samples. The two schedulers step
once an epoch, each on its own optimiser."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from src.losses.gradient_penalty import WassersteinGP
from src.models.wgan_gp import WGANGP
from tests.stubs_b import (
    Affine,
    AffineGenerator,
    HalfSquare,
    StepRecorder,
    batch,
    evaluate,
    loader,
    metrics,
    shared_rows,
    trainer,
)

W, C = (0.9, -0.8), 0.3  # |w| = 1.204: both penalties are active
B = (-1.5, 1.2)  # generator bias, beyond the clip of 1 (only the critic is clipped)
ZERO_A = ((0.0, 0.0), (0.0, 0.0))  # G(z) = b for every code
A = ((1.0, 0.5), (-0.3, 2.0))
REAL = torch.tensor([[0.2, -0.1], [1.1, -1.3], [0.4, -0.2], [0.3, -0.8]])  # mean (0.5, -0.6)


def wgan(
    generator: AffineGenerator,
    critic: torch.nn.Module,
    lr_g: float,
    lr_c: float,
    loss: WassersteinGP | None = None,
    eval_seed: int = 0,
    n_critic: int = 1,
) -> WGANGP:
    return WGANGP(
        generator=generator,
        critic=critic,
        loss=loss or WassersteinGP("two_sided", lam=1.0),
        optimizer=functools.partial(torch.optim.SGD, lr=lr_g),
        critic_optimizer=functools.partial(torch.optim.SGD, lr=lr_c),
        n_critic=n_critic,
        eval_seed=eval_seed,
    )


def _penalty(kind: str, norm: float) -> tuple[float, float]:
    """(penalty, its derivative) at gradient norm `norm`."""
    if kind == "two_sided":
        return (norm - 1) ** 2, 2 * (norm - 1)
    if kind == "one_sided":
        return max(norm - 1, 0.0), float(norm > 1)
    return 0.0, 0.0


@pytest.mark.parametrize("kind", ["two_sided", "one_sided", "none"])
def test_a_critic_step_widens_the_gap_by_the_hand_computed_sgd_step(kind: str) -> None:
    """Critic loss E[D(fake)] - E[D(real)] + lam P(|w|): its gradient in w is
    mean(fake) - mean(real) + lam P'(|w|) w / |w| and 0 in c; with penalty none the weights are
    then clipped to [-clip, clip]. The generator step that follows (lr 0) scores b under the
    updated critic."""
    lam, clip, lr = 0.7, 1.0, 0.1
    critic, generator = Affine(W, C), AffineGenerator(ZERO_A, B)
    model = wgan(generator, critic, lr_g=0.0, lr_c=lr, loss=WassersteinGP(kind, lam, clip))
    fit = trainer()
    fit.fit(model, train_dataloaders=loader([batch(REAL)]))

    w, b, real_mean = torch.tensor(W), torch.tensor(B), REAL.mean(0)
    norm = math.hypot(*W)
    penalty, slope = _penalty(kind, norm)
    expected_w = w - lr * (b - real_mean + lam * slope * w / norm)
    expected_c = torch.tensor(C)
    if kind == "none":
        expected_w = expected_w.clamp(-clip, clip)
        assert expected_w[0] == clip  # the clip is binding here
    else:
        assert expected_w.abs().max() > clip  # and would be with a penalty: it must not act
    torch.testing.assert_close(critic.w.detach(), expected_w)
    torch.testing.assert_close(critic.c.detach(), expected_c)
    torch.testing.assert_close(generator.b.detach(), b)  # the critic step moves only the critic

    gap_before = float(w @ (real_mean - b))
    gap_after = float(critic.w.detach() @ (real_mean - b))
    assert gap_after > gap_before + 0.1

    logged = metrics(fit)
    assert logged["train/wasserstein"] == pytest.approx(gap_before, rel=1e-5)
    lam_penalty = lam * penalty if kind != "none" else 0.0
    assert logged["train/critic_loss"] == pytest.approx(-gap_before + lam_penalty, rel=1e-5)
    after_score = float(expected_w @ b) + C
    assert logged["train/generator_loss"] == pytest.approx(-after_score, rel=1e-5)
    if kind == "none":
        assert not {"train/gradient_penalty", "train/grad_norm"} & set(logged)
    else:
        assert logged["train/gradient_penalty"] == pytest.approx(penalty, rel=1e-5)
        assert logged["train/grad_norm"] == pytest.approx(norm, rel=1e-5)
        assert logged["train/grad_norm_max"] == pytest.approx(norm, rel=1e-5)


def test_generator_steps_raise_the_score_of_the_samples_under_a_fixed_critic() -> None:
    """-E[D(G(z))] has gradient -w in b: each generator step adds lr * w to b and raises the mean
    score by lr |w|^2. Two epochs of batches of 4 and 2: each critic step contrasts the real batch
    with samples of the generator as the previous steps left it; the logged terms are the second
    epoch's means weighted by batch size; every training draw takes fresh codes."""
    lr = 0.25
    critic, generator = Affine(W, C), AffineGenerator(ZERO_A, B)
    model = wgan(generator, critic, lr_g=lr, lr_c=0.0)
    batches = [REAL, torch.tensor([[2.0, 1.0], [-1.0, 0.5]])]
    fit = trainer(max_epochs=2)
    before = float(critic(model.sample(8)).mean().detach())
    generator.calls.clear()
    fit.fit(model, train_dataloaders=loader([batch(x) for x in batches]))
    codes = torch.cat(generator.calls)  # every draw of the fit
    after = float(critic(model.sample(8)).mean().detach())

    w, b = torch.tensor(W), torch.tensor(B)
    torch.testing.assert_close(generator.b.detach(), b + 4 * lr * w)
    assert after - before == pytest.approx(4 * lr * float(w @ w), rel=1e-5)
    assert after > before
    torch.testing.assert_close(critic.w.detach(), w)  # lr 0: the critic stays as it was

    logged = metrics(fit)
    scores = [float(w @ (b + step * lr * w)) + C for step in (2, 3)]  # D(G(z)) in epoch 2
    generator_loss = -(4 * scores[0] + 2 * scores[1]) / 6
    assert logged["train/generator_loss"] == pytest.approx(generator_loss, rel=1e-5)
    gaps = [float(w @ x.mean(0)) + C - score for x, score in zip(batches, scores, strict=True)]
    assert logged["train/wasserstein"] == pytest.approx((4 * gaps[0] + 2 * gaps[1]) / 6, rel=1e-5)

    assert len(codes) >= 12 and len(torch.unique(codes, dim=0)) == len(codes)


def test_generator_terms_are_the_means_over_the_epochs_generator_steps() -> None:
    """n_critic = 2 over batches of 4, 2, 3 and 1: generator steps after the second and the fourth
    critic step, on 2 and 1 samples. The first epoch's generator loss is their weighted mean, not
    polluted by the batches before the first generator step; the critic terms count every batch."""
    lr = 0.25
    critic, generator = Affine(W, C), AffineGenerator(ZERO_A, B)
    model = wgan(generator, critic, lr_g=lr, lr_c=0.0, n_critic=2)
    batches = [REAL, REAL[:2] + 1, REAL[:3] - 1, REAL[:1]]
    fit = trainer()
    fit.fit(model, train_dataloaders=loader([batch(x) for x in batches]))

    w, b = torch.tensor(W), torch.tensor(B)
    torch.testing.assert_close(generator.b.detach(), b + 2 * lr * w)
    scores = [float(w @ b) + C, float(w @ (b + lr * w)) + C]  # D(G(z)) at the two steps
    logged = metrics(fit)
    assert logged["train/generator_loss"] == pytest.approx(
        -(2 * scores[0] + scores[1]) / 3, rel=1e-5
    )
    fakes = [b, b, b + lr * w, b + lr * w]  # the generator each critic step sees
    gaps = [float(w @ (x.mean(0) - f)) for x, f in zip(batches, fakes, strict=True)]
    weighted = sum(len(x) * gap for x, gap in zip(batches, gaps, strict=True)) / 10
    assert logged["train/wasserstein"] == pytest.approx(weighted, rel=1e-5)


def test_both_schedulers_step_once_per_epoch() -> None:
    """StepLR(1, gamma) on each optimiser, two epochs of three batches: each learning rate is
    multiplied by gamma^2 (one step per epoch, not per batch), the generator's by 0.5 and the
    critic's by 0.1, so neither takes the other's scheduler."""
    model = WGANGP(
        generator=AffineGenerator(ZERO_A, B),
        critic=Affine(W, C),
        loss=WassersteinGP("two_sided", lam=1.0),
        optimizer=functools.partial(torch.optim.SGD, lr=0.2),
        critic_optimizer=functools.partial(torch.optim.SGD, lr=0.3),
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        critic_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1),
        n_critic=1,
    )
    fit = trainer(max_epochs=2)
    fit.fit(model, train_dataloaders=loader([batch(REAL)] * 3))
    generator_lr, critic_lr = (opt.param_groups[0]["lr"] for opt in fit.optimizers)
    assert generator_lr == pytest.approx(0.2 * 0.5**2)
    assert critic_lr == pytest.approx(0.3 * 0.1**2)


def _evaluate(
    model: WGANGP, batches: list[torch.Tensor], stage: str
) -> tuple[dict[str, float], StepRecorder]:
    return evaluate(model, stage, model.generator, batches)


@pytest.mark.parametrize("stage", ["val", "test"])
def test_evaluation_estimate_from_noise_of_its_own_for_each_batch(stage: str) -> None:
    """W_i = mean D(real_i) - mean D(G(z_i)) for each batch, the logged estimate their mean
    weighted by batch size, the gradient norm |w|. The codes differ between batches, are the
    same when the evaluation runs again and change with the evaluation seed."""
    critic = Affine(W, C)
    model = wgan(AffineGenerator(A, B), critic, lr_g=0.1, lr_c=0.1)
    batches = [torch.randn(5, 2, generator=torch.Generator().manual_seed(1)) + 1.0, REAL[:3]]
    logged, recorder = _evaluate(model, batches, stage)

    w, a, b = torch.tensor(W), torch.tensor(A), torch.tensor(B)
    estimates = []
    for x, codes in zip(batches, recorder.inputs, strict=True):
        fake = torch.cat(codes) @ a.T + b
        assert len(fake) == len(x)
        estimates.append(float((x @ w).mean() - (fake @ w).mean()))
    torch.testing.assert_close(torch.stack(recorder.outputs), torch.tensor(estimates))
    weighted = (5 * estimates[0] + 3 * estimates[1]) / 8
    assert logged[f"{stage}/wasserstein"] == pytest.approx(weighted, rel=1e-5)
    assert logged[f"{stage}/grad_norm"] == pytest.approx(math.hypot(*W), rel=1e-5)

    first, second = (torch.cat(codes) for codes in recorder.inputs)
    assert shared_rows(first, second) == 0
    _, again = _evaluate(model, batches, stage)
    for codes, repeated in zip(recorder.inputs, again.inputs, strict=True):
        torch.testing.assert_close(torch.cat(codes), torch.cat(repeated), rtol=0, atol=0)
    other_seed = wgan(AffineGenerator(A, B), critic, lr_g=0.1, lr_c=0.1, eval_seed=1)
    _, other = _evaluate(other_seed, batches, stage)
    assert shared_rows(first, torch.cat(other.inputs[0])) == 0


def test_evaluation_gradient_norm_is_taken_at_interpolates() -> None:
    """D(x) = |x|^2 / 2 with real points 3u and generated points u (|u| = 1): the gradient norm is
    3 at the real points, 1 at the generated ones and 1 + 2e at e real + (1 - e) generated, with
    e ~ U(0, 1) per sample: about 2 over 2000 samples. The estimate is 9/2 - 1/2 = 4."""
    u = (0.6, 0.8)
    model = wgan(AffineGenerator(ZERO_A, u), HalfSquare(), lr_g=0.1, lr_c=0.1)
    logged, _ = _evaluate(model, [3 * torch.tensor(u).repeat(2000, 1)], "val")
    assert logged["val/wasserstein"] == pytest.approx(4.0, rel=1e-5)
    assert abs(logged["val/grad_norm"] - 2.0) < 0.05


def test_the_model_maps_codes_through_its_generator() -> None:
    a = [[1.0, 2.0], [0.0, -1.0]]
    model = wgan(AffineGenerator(a, [0.5, 0.0]), Affine(W, C), lr_g=0.0, lr_c=0.0)
    z = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    torch.testing.assert_close(model(z), torch.tensor([[3.5, -1.0], [2.5, 0.0]]))
