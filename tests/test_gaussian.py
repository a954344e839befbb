"""Gaussian divergences (src/losses/gaussian.py) against torch.distributions, scipy, special cases
and numerical integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from src.losses.gaussian import (
    gaussian_bhattacharyya,
    gaussian_kl,
    gaussian_kl_diagonal,
    gaussian_w2,
)
from src.losses.kl import kl_normal_standard

F64 = torch.float64
DIVERGENCES = [gaussian_kl, gaussian_bhattacharyya, gaussian_w2]


def _random_gaussian(
    batch: tuple[int, ...], d: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean (*batch, d) and an SPD covariance A A^T + 0.1 I (*batch, d, d), float64."""
    mu = torch.randn(*batch, d, generator=gen, dtype=F64)
    a = torch.randn(*batch, d, d, generator=gen, dtype=F64)
    return mu, a @ a.mT + 0.1 * torch.eye(d, dtype=F64)


def _pair(batch: tuple[int, ...], d: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (*_random_gaussian(batch, d, gen), *_random_gaussian(batch, d, gen))


BATCH_DIMS = [((4,), 1), ((4,), 3), ((2, 3), 3), ((2, 3), 5), ((4,), 5)]


# ---------------------------------------------------------------- KL


@pytest.mark.parametrize(("batch", "d"), BATCH_DIMS)
def test_kl_matches_torch_distributions(batch: tuple[int, ...], d: int) -> None:
    mu1, cov1, mu2, cov2 = _pair(batch, d, seed=d)
    expected = kl_divergence(MultivariateNormal(mu1, cov1), MultivariateNormal(mu2, cov2))
    got = gaussian_kl(mu1, cov1, mu2, cov2)
    assert got.shape == batch
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_kl_of_identical_gaussians_is_zero_and_kl_is_nonnegative() -> None:
    mu1, cov1, mu2, cov2 = _pair((64,), 4, seed=0)
    torch.testing.assert_close(gaussian_kl(mu1, cov1, mu1, cov1), torch.zeros(64, dtype=F64))
    assert torch.all(gaussian_kl(mu1, cov1, mu2, cov2) > 0)
    assert torch.all(gaussian_kl(mu2, cov2, mu1, cov1) > 0)


def test_kl_diagonal_matches_full_covariance_kl() -> None:
    gen = torch.Generator().manual_seed(1)
    mu1, lv1, mu2, lv2 = torch.randn(4, 2, 6, 3, generator=gen, dtype=F64).unbind(0)
    full = gaussian_kl(mu1, torch.diag_embed(lv1.exp()), mu2, torch.diag_embed(lv2.exp()))
    torch.testing.assert_close(gaussian_kl_diagonal(mu1, lv1, mu2, lv2), full)


def test_kl_normal_standard_is_the_diagonal_kl_to_a_standard_normal() -> None:
    gen = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(2, 5, 4, generator=gen).unbind(0)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_normal_standard(mu, logvar), expected)


# ---------------------------------------------------------------- Bhattacharyya


def test_bhattacharyya_with_equal_covariances_is_an_eighth_of_the_squared_mahalanobis() -> None:
    mu1, cov, mu2, _ = _pair((5,), 3, seed=3)
    diff = (mu1 - mu2).unsqueeze(-1)
    mahalanobis_sq = (diff.mT @ torch.linalg.solve(cov, diff)).squeeze((-2, -1))
    torch.testing.assert_close(gaussian_bhattacharyya(mu1, cov, mu2, cov), mahalanobis_sq / 8)


@pytest.mark.parametrize(
    ("distance", "atol"), [(gaussian_bhattacharyya, 1e-12), (gaussian_w2, 1e-9)], ids=["bhat", "w2"]
)
def test_symmetric_zero_on_identical_and_positive_otherwise(distance, atol: float) -> None:
    mu1, cov1, mu2, cov2 = _pair((2, 3), 4, seed=4)
    forward = distance(mu1, cov1, mu2, cov2)
    torch.testing.assert_close(forward, distance(mu2, cov2, mu1, cov1))
    assert torch.all(forward > 0)
    zero = distance(mu1, cov1, mu1, cov1)
    torch.testing.assert_close(zero, torch.zeros(2, 3, dtype=F64), atol=atol, rtol=0)


def _bhattacharyya_on_grid(mu1, cov1, mu2, cov2, half_width: float, step: float) -> float:
    """-log ∫ sqrt(p q) dx by a Riemann sum on a regular grid (spectrally accurate here)."""
    d = mu1.shape[-1]
    axis = torch.arange(-half_width, half_width + step / 2, step, dtype=F64)
    x = torch.stack(torch.meshgrid(*[axis] * d, indexing="ij"), -1).reshape(-1, d)
    log_p = MultivariateNormal(mu1, cov1).log_prob(x)
    log_q = MultivariateNormal(mu2, cov2).log_prob(x)
    return -math.log((0.5 * (log_p + log_q)).exp().sum().item() * step**d)


@pytest.mark.parametrize(
    ("mu1", "cov1", "mu2", "cov2"),
    [
        ([0.7], [[0.5]], [-0.6], [[2.0]]),
        ([0.3, -0.5], [[1.0, 0.3], [0.3, 0.5]], [-0.4, 0.8], [[0.6, -0.2], [-0.2, 1.2]]),
    ],
    ids=["d1", "d2"],
)
def test_bhattacharyya_matches_numerical_integral(mu1, cov1, mu2, cov2) -> None:
    mu1, cov1, mu2, cov2 = (torch.tensor(v, dtype=F64) for v in (mu1, cov1, mu2, cov2))
    numeric = _bhattacharyya_on_grid(mu1, cov1, mu2, cov2, half_width=10.0, step=0.02)
    assert numeric > 0.05  # the distributions differ, so the check is not vacuous
    closed = gaussian_bhattacharyya(mu1, cov1, mu2, cov2).item()
    assert closed == pytest.approx(numeric, abs=1e-6, rel=1e-5)


# ---------------------------------------------------------------- squared 2-Wasserstein


def test_w2_for_diagonal_covariances_is_mean_plus_std_differences() -> None:
    gen = torch.Generator().manual_seed(5)
    mu1, mu2 = torch.randn(2, 6, 4, generator=gen, dtype=F64).unbind(0)
    var1, var2 = torch.rand(2, 6, 4, generator=gen, dtype=F64).add(0.05).unbind(0)
    expected = (mu1 - mu2).pow(2).sum(-1) + (var1.sqrt() - var2.sqrt()).pow(2).sum(-1)
    got = gaussian_w2(mu1, torch.diag_embed(var1), mu2, torch.diag_embed(var2))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_w2_in_one_dimension_is_squared_mean_and_sigma_differences() -> None:
    m1, s1, m2, s2 = 0.3, 1.5, -0.4, 0.7
    got = gaussian_w2(
        torch.tensor([m1], dtype=F64),
        torch.tensor([[s1**2]], dtype=F64),
        torch.tensor([m2], dtype=F64),
        torch.tensor([[s2**2]], dtype=F64),
    )
    assert got.item() == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12)


@pytest.mark.parametrize(("batch", "d"), BATCH_DIMS)
def test_w2_matches_scipy_sqrtm_formula(batch: tuple[int, ...], d: int) -> None:
    mu1, cov1, mu2, cov2 = _pair(batch, d, seed=10 + d)
    expected = np.empty(batch)
    for idx in np.ndindex(*batch):
        s1, s2 = cov1[idx].numpy(), cov2[idx].numpy()
        root2 = np.real(scipy.linalg.sqrtm(s2))
        cross = np.real(scipy.linalg.sqrtm(root2 @ s1 @ root2))
        mean_sq = float(((mu1[idx] - mu2[idx]) ** 2).sum())
        expected[idx] = mean_sq + np.trace(s1 + s2 - 2 * cross)
    got = gaussian_w2(mu1, cov1, mu2, cov2)
    torch.testing.assert_close(got, torch.from_numpy(expected), atol=1e-6, rtol=1e-6)


def test_w2_in_one_dimension_matches_sorted_sample_coupling() -> None:
    """In 1-d the optimal coupling pairs quantiles, so W2^2 ≈ mean (x_(i) - y_(i))^2."""
    m1, s1, m2, s2 = 0.3, 1.5, -0.4, 0.7
    n = 200_000  # the estimate's spread across seeds is about 0.006
    gen = torch.Generator().manual_seed(7)
    x = (m1 + s1 * torch.randn(n, generator=gen, dtype=F64)).sort().values
    y = (m2 + s2 * torch.randn(n, generator=gen, dtype=F64)).sort().values
    empirical = (x - y).pow(2).mean().item()
    closed = gaussian_w2(*(torch.tensor(v, dtype=F64) for v in ([m1], [[s1**2]], [m2], [[s2**2]])))
    assert closed.item() == pytest.approx(empirical, abs=0.03)


def test_w2_gradient_is_finite_with_repeated_eigenvalues() -> None:
    mu = torch.zeros(3, dtype=F64)
    cov1 = torch.diag(torch.tensor([2.0, 2.0, 0.5], dtype=F64)).requires_grad_()
    cov2 = torch.eye(3, dtype=F64, requires_grad=True)
    gaussian_w2(mu, cov1, mu, cov2).backward()
    assert torch.isfinite(cov1.grad).all() and torch.isfinite(cov2.grad).all()


# ---------------------------------------------------------------- broadcasting and dtype


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda f: f.__name__)
def test_divergences_broadcast_batch_dimensions(divergence) -> None:
    gen = torch.Generator().manual_seed(8)
    mu1, cov1 = _random_gaussian((3, 1), 3, gen)
    mu2, cov2 = _random_gaussian((1, 4), 3, gen)
    got = divergence(mu1, cov1, mu2, cov2)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            single = divergence(mu1[i, 0], cov1[i, 0], mu2[0, j], cov2[0, j])
            torch.testing.assert_close(got[i, j], single)


def test_diagonal_kl_broadcasts_batch_dimensions() -> None:
    gen = torch.Generator().manual_seed(9)
    mu1, lv1 = torch.randn(2, 3, 1, 5, generator=gen).unbind(0)
    mu2, lv2 = torch.randn(2, 1, 4, 5, generator=gen).unbind(0)
    got = gaussian_kl_diagonal(mu1, lv1, mu2, lv2)
    assert got.shape == (3, 4)
    torch.testing.assert_close(
        got[2, 1], gaussian_kl_diagonal(mu1[2, 0], lv1[2, 0], mu2[0, 1], lv2[0, 1])
    )


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda f: f.__name__)
def test_divergences_keep_the_input_dtype(divergence) -> None:
    mu1, cov1, mu2, cov2 = (t.float() for t in _pair((2,), 3, seed=11))
    got = divergence(mu1, cov1, mu2, cov2)
    assert got.dtype == torch.float32
    expected = divergence(*(t.double() for t in (mu1, cov1, mu2, cov2)))
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=1e-4)
