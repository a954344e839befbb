"""The Langevin sampler draws from exp(-E) and the replay buffer restarts chains at its rate."""

from __future__ import annotations

import math

import pytest
import torch

from src.models.components.langevin import LangevinSampler, ReplayBuffer
from src.utils.errors import UserError

MU = torch.tensor([0.5, -1.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
PRECISION = torch.linalg.inv(COV)


def quadratic_energy(x: torch.Tensor) -> torch.Tensor:
    """E(x) = (x - mu)^T Sigma^-1 (x - mu) / 2: exp(-E) is N(mu, Sigma)."""
    d = x - MU
    return 0.5 * torch.einsum("bi,ij,bj->b", d, PRECISION, d)


def test_chains_on_a_quadratic_energy_draw_its_gaussian() -> None:
    step = 0.01
    sampler = LangevinSampler(
        steps=600, step_size=step, noise=None, grad_clamp=None, data_range=None
    )
    gen = torch.Generator().manual_seed(0)
    x = sampler(quadratic_energy, torch.zeros(4000, 2), generator=gen)
    # the discretised chain's stationary covariance is Sigma (I - step Sigma^-1 / 2)^-1, exactly
    cov_chain = COV @ torch.linalg.inv(torch.eye(2) - 0.5 * step * PRECISION)
    n = len(x)
    mean_err = (x.mean(0) - MU).abs()
    assert (mean_err < 4 * torch.sqrt(torch.diag(cov_chain) / n)).all(), mean_err
    cov = torch.cov(x.T)
    # std of a sample covariance entry: sqrt((S_ij^2 + S_ii S_jj) / n)
    se = torch.sqrt((cov_chain.square() + torch.outer(cov_chain.diag(), cov_chain.diag())) / n)
    assert ((cov - cov_chain).abs() < 4 * se).all(), (cov, cov_chain)
    assert (cov_chain - COV).abs().max() < 0.02  # close to the target itself


def test_a_wrong_noise_scale_is_caught() -> None:
    """The test above can fail: twice the noise gives four times the covariance."""
    sampler = LangevinSampler(
        steps=600, step_size=0.01, noise=2 * math.sqrt(0.02), grad_clamp=None, data_range=None
    )
    x = sampler(quadratic_energy, torch.zeros(4000, 2), generator=torch.Generator().manual_seed(0))
    assert torch.cov(x.T)[0, 0] > 3 * COV[0, 0]


def test_clamps_hold_and_sampling_works_without_grad_mode() -> None:
    sampler = LangevinSampler(
        steps=5, step_size=10.0, noise=0.005, grad_clamp=0.03, data_range=(0, 1)
    )
    with torch.no_grad():
        x = sampler(lambda x: 50 * x.sum(dim=(1, 2, 3)), torch.full((8, 1, 4, 4), 0.5))
    # each step moves a pixel by step * clamp(grad) = 10 * 0.03 = 0.3 (plus small noise)
    assert x.min() >= 0 and x.max() <= 1 and not x.requires_grad
    assert (x < 0.01).all()


def test_inference_mode_leaves_autograd_as_it_was_after_the_chain() -> None:
    sampler = LangevinSampler(steps=2, step_size=0.1, noise=None, grad_clamp=None, data_range=None)
    with torch.inference_mode():
        x = sampler(quadratic_energy, torch.ones(2, 2), generator=torch.Generator().manual_seed(0))
        assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    assert x.shape == (2, 2) and not x.requires_grad


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.5])
def test_buffer_restarts_chains_at_the_configured_rate(rate: float) -> None:
    buffer = ReplayBuffer(500, (3,), (-1.0, 1.0), reinit_prob=rate)
    buffer.points.fill_(5.0)  # outside the noise box: a fresh start is recognisable
    gen = torch.Generator().manual_seed(1)
    fresh_total, n_total = 0, 0
    for _ in range(40):
        x, index, fresh = buffer.draw(500, gen)
        assert ((x.abs() <= 1).all(-1) == fresh).all()
        assert (x[~fresh] == 5.0).all()
        fresh_total, n_total = fresh_total + int(fresh.sum()), n_total + len(fresh)
        buffer.push(torch.full_like(x, 5.0), index)
    share = fresh_total / n_total
    assert abs(share - rate) <= 4 * math.sqrt(rate * (1 - rate) / n_total) + 1e-12


def test_buffer_push_returns_samples_to_their_slots() -> None:
    buffer = ReplayBuffer(10, (2,), (0.0, 1.0), reinit_prob=0.0)
    x, index, _ = buffer.draw(4, torch.Generator().manual_seed(0))
    buffer.push(x + 10, index)
    assert torch.equal(buffer.points[index], x + 10)
    assert "points" in buffer.state_dict()


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="step_size"):
        LangevinSampler(steps=10, step_size=0.0)
    with pytest.raises(UserError, match="reinit_prob"):
        ReplayBuffer(10, (2,), (0.0, 1.0), reinit_prob=1.5)
