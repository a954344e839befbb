"""The grid KL split into mass near the modes, the modes' shares and the shapes within regions."""

from __future__ import annotations

import math

import pytest
import torch

from src.data.toy_distributions import EightGaussians
from src.metrics.toy2d import (
    grid_log_density,
    grid_points,
    kl_decomposition,
    kl_on_grid,
    mode_regions,
)

N = 60


@pytest.fixture(scope="module")
def grid() -> tuple[torch.Tensor, torch.Tensor, EightGaussians]:
    dist = EightGaussians()
    _, _, log_p = grid_log_density(dist, N)
    _, _, points = grid_points(dist.bounds, N)
    region = mode_regions(points.reshape(-1, 2), dist.modes, 3 * dist.scale)
    return log_p, region, dist


def test_regions_are_the_nearest_mode_within_the_radius_else_outside() -> None:
    modes = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    points = torch.tensor([[0.1, 0.0], [1.9, 0.1], [1.0, 0.0], [0.0, 0.6]])
    assert mode_regions(points, modes, 0.5).tolist() == [0, 1, 2, 2]


def test_the_three_terms_sum_to_the_grid_kl(grid) -> None:
    log_p, region, dist = grid
    log_q = log_p + torch.randn(log_p.shape, generator=torch.Generator().manual_seed(0))
    terms = kl_decomposition(log_p, log_q, region, len(dist.modes))
    assert all(value > 0 for value in terms.values())
    assert sum(terms.values()) == pytest.approx(kl_on_grid(log_p, log_q), rel=1e-9)


def test_reweighted_modes_give_only_the_shares_term(grid) -> None:
    log_p, region, dist = grid
    weights = torch.tensor([2.0, 1, 1, 1, 1, 1, 1, 0.5, 1], dtype=torch.float64)
    # modes scaled by their weights, rescaled so that the mass near the modes is unchanged
    mass = torch.zeros(9, dtype=torch.float64).index_add_(
        0, region, torch.softmax(log_p.flatten(), 0)
    )
    scale = weights * mass[:8].sum() / (weights[:8] * mass[:8]).sum()
    scale[8] = 1.0
    log_q = log_p.flatten() + scale.log()[region]
    terms = kl_decomposition(log_p, log_q, region, len(dist.modes))
    shares_p = mass[:8] / mass[:8].sum()
    shares_q = shares_p * weights[:8] / (shares_p * weights[:8]).sum()
    expected = float(mass[:8].sum() * (shares_p * (shares_p / shares_q).log()).sum())
    assert terms["kl_shares"] == pytest.approx(expected, rel=1e-9)
    assert terms["kl_mass"] == pytest.approx(0, abs=1e-12)
    assert terms["kl_within"] == pytest.approx(0, abs=1e-12)


def test_mass_moved_outside_gives_only_the_mass_term(grid) -> None:
    log_p, region, dist = grid
    log_q = log_p.flatten() + (region == 8).double() * math.log(5.0)
    terms = kl_decomposition(log_p, log_q, region, len(dist.modes))
    p = torch.softmax(log_p.flatten(), 0)
    p_out = float(p[region == 8].sum())
    q_out = 5 * p_out / (1 - p_out + 5 * p_out)
    expected = (1 - p_out) * math.log((1 - p_out) / (1 - q_out)) + p_out * math.log(p_out / q_out)
    assert terms["kl_mass"] == pytest.approx(expected, rel=1e-9)
    assert terms["kl_shares"] == pytest.approx(0, abs=1e-12)
    assert terms["kl_within"] == pytest.approx(0, abs=1e-12)


def test_a_model_with_no_mass_where_the_truth_has_some_gives_inf(grid) -> None:
    log_p, region, dist = grid
    log_q = torch.where(region == 3, -math.inf, log_p.flatten())
    terms = kl_decomposition(log_p, log_q, region, len(dist.modes))
    assert terms["kl_shares"] == math.inf
