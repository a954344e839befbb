"""What `EBMGenerator`'s steps do with the maths ('GAN = analysis + sampling'): with a linear critic
D(x) = w . x + c (energy E = -D), a generator G(z) = z A^T + b and a statistics net
T(z, x) = t + beta . x, the generator's loss E[E(G(z))] - entropy_weight * I_JSD, its logged terms
and the SGD step it makes on the generator and the statistics net are computed by hand for
several weights, 0 included. The negatives of the energy step are G(z), moved by the Langevin
chains on the codes and on the samples when configured; with noiseless one-step chains their
end points are known in closed form. Evaluation draws its own noise for every batch."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from src.losses.contrastive_divergence import MEGLoss
from src.models.components.langevin import LangevinSampler
from src.models.ebm_generator import EBMGenerator
from tests.stubs_b import (
    Affine,
    AffineGenerator,
    batch,
    evaluate,
    loader,
    metrics,
    shared_rows,
    trainer,
)

W, C = (0.9, -0.8), 0.3
B = (-1.5, 1.2)
ZERO_A = ((0.0, 0.0), (0.0, 0.0))
A = ((1.0, 0.5), (-0.3, 2.0))
T0, BETA = -0.7, (0.5, 0.4)  # T(z, b) = -0.97
REAL = torch.tensor([[0.2, -0.1], [1.1, -1.3], [0.4, -0.2], [0.3, -0.8]])
LAM, ALPHA, LR = 0.3, 0.2, 0.1


class XStatistics(nn.Module):
    """T(z, x) = t + beta . x: the same for joint and shuffled pairs, so I_JSD = s - 2 softplus(s)
    at s = T(., x) whatever the shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(T0))
        self.beta = nn.Parameter(torch.tensor(BETA))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.t + x.flatten(1) @ self.beta


def meg(
    generator: AffineGenerator,
    entropy_weight: float = 1.0,
    refine: LangevinSampler | None = None,
    refine_code: LangevinSampler | None = None,
) -> EBMGenerator:
    return EBMGenerator(
        statistics=XStatistics(),
        entropy_weight=entropy_weight,
        refine=refine,
        refine_code=refine_code,
        generator=generator,
        critic=Affine(W, C),
        loss=MEGLoss(lam=LAM, alpha=ALPHA),
        optimizer=functools.partial(torch.optim.SGD, lr=LR),
        critic_optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        n_critic=1,
    )


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_generator_loss_is_the_energy_minus_the_weighted_entropy_term(weight: float) -> None:
    """G(z) = b for every code (A = 0): the loss is E(b) - weight * I, I = s - 2 softplus(s),
    s = t + beta . b, I'(s) = 1 - 2 sigmoid(s). SGD moves b by lr (w + weight I'(s) beta), and the
    statistics net, on the generator's optimiser, up the bound: t by lr weight I'(s), beta by
    lr weight I'(s) b; with weight 0 it stays and no `train/mi` is logged."""
    model = meg(AffineGenerator(ZERO_A, B), weight)
    fit = trainer()
    fit.fit(model, train_dataloaders=loader([batch(REAL)]))

    w, b, beta = torch.tensor(W), torch.tensor(B), torch.tensor(BETA)
    s = T0 + float(beta @ b)
    mi = s - 2 * math.log1p(math.exp(s))
    slope = 1 - 2 / (1 + math.exp(-s))
    energy = -(float(w @ b) + C)
    logged = metrics(fit)
    assert logged["train/generator_loss"] == pytest.approx(energy - weight * mi, rel=1e-5)
    if weight > 0:
        assert logged["train/mi"] == pytest.approx(mi, rel=1e-5)
    else:
        assert "train/mi" not in logged
    torch.testing.assert_close(model.generator.b.detach(), b + LR * (w + weight * slope * beta))
    torch.testing.assert_close(model.statistics.t.detach(), torch.tensor(T0 + LR * weight * slope))
    torch.testing.assert_close(model.statistics.beta.detach(), beta + LR * weight * slope * b)


def _refine_to_the_code_prior_mode() -> LangevinSampler:
    """One noiseless step of size 1 on E_z(z) = E(G(z)) + |z|^2 / 2, whose gradient is
    z - A^T w: every code lands on A^T w."""
    return LangevinSampler(steps=1, step_size=1.0, noise=0.0, grad_clamp=None, data_range=None)


@pytest.mark.parametrize(
    ("refine_code", "refine"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_energy_step_contrasts_the_data_with_the_configured_negatives(
    refine_code: bool, refine: bool
) -> None:
    """Negatives: b with A = 0 and no code chain; A A^T w + b after the code chain; plus
    3 * 0.1 w after a 3-step noiseless chain on E = -D (gradient -w). The logged energy-step terms
    are MEG's: W = mean D(real) - mean D(fake), penalty |w|^2, alpha (mean D(real)^2 +
    mean D(fake)^2)."""
    a = A if refine_code else ZERO_A
    sample_chain = LangevinSampler(3, 0.1, noise=0.0, grad_clamp=None, data_range=(-10.0, 10.0))
    model = meg(
        AffineGenerator(a, B),
        entropy_weight=0.0,
        refine=sample_chain if refine else None,
        refine_code=_refine_to_the_code_prior_mode() if refine_code else None,
    )
    fit = trainer()
    fit.fit(model, train_dataloaders=loader([batch(REAL)]))

    w, a_matrix = torch.tensor(W), torch.tensor(a)
    fake = torch.tensor(B) + (a_matrix @ a_matrix.T @ w if refine_code else 0)
    if refine:
        fake = fake + 3 * 0.1 * w
    d_real, d_fake = REAL @ w + C, float(fake @ w) + C
    wasserstein = float(d_real.mean()) - d_fake
    reg = ALPHA * (float(d_real.square().mean()) + d_fake**2)
    logged = metrics(fit)
    assert logged["train/wasserstein"] == pytest.approx(wasserstein, rel=1e-5)
    assert logged["train/gradient_penalty"] == pytest.approx(float(w @ w), rel=1e-5)
    assert logged["train/reg"] == pytest.approx(reg, rel=1e-5)
    critic_loss = -wasserstein + LAM * float(w @ w) + reg
    assert logged["train/critic_loss"] == pytest.approx(critic_loss, rel=1e-5)


@pytest.mark.parametrize("stage", ["val", "test"])
def test_evaluation_estimate_from_noise_of_its_own_for_each_batch(stage: str) -> None:
    """W_i = mean D(real_i) - mean D(G(z_i)) with the batch's own codes, the logged estimate their
    mean weighted by batch size; the codes differ between batches and repeat on a second run."""
    model = meg(AffineGenerator(A, B))
    batches = [REAL, REAL[:2] + 1.0]
    logged, recorder = evaluate(model, stage, model.generator, batches)
    w, a, b = torch.tensor(W), torch.tensor(A), torch.tensor(B)
    estimates = [
        float((x @ w).mean() - ((torch.cat(codes) @ a.T + b) @ w).mean())
        for x, codes in zip(batches, recorder.inputs, strict=True)
    ]
    weighted = (4 * estimates[0] + 2 * estimates[1]) / 6
    assert logged[f"{stage}/wasserstein"] == pytest.approx(weighted, rel=1e-5)
    first, second = (torch.cat(codes) for codes in recorder.inputs)
    assert shared_rows(first, second) == 0
    _, again = evaluate(model, stage, model.generator, batches)
    for codes, repeated in zip(recorder.inputs, again.inputs, strict=True):
        torch.testing.assert_close(torch.cat(codes), torch.cat(repeated), rtol=0, atol=0)
