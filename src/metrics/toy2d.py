"""Exact sample-quality measures on 2-d toy data, where the true distribution is known.

- `mode_coverage`: every sample is assigned to its nearest true mode; it is "high quality" when it
  lies within `n_std` standard deviations of that mode (for an isotropic 2-d Gaussian, 98.9% of
  its own samples lie within 3 sigma). A mode is covered when it holds at least `min_share` of the
  share a uniform spread over the modes would give it (Srivastava et al.'s VEEGAN protocol counts
  modes the same way).
- `mmd`: the unbiased squared maximum mean discrepancy with a sum of Gaussian kernels,
      MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)),
  between model samples and a large sample of the true distribution; 0 iff the two are equal.
- `grid_points`, `grid_log_density`, `kl_on_grid`: densities on an n x n grid of cell midpoints
  over the distribution's box, and KL(true || model) with both normalised over the cells;
  `grid_kl_terms` gives the KL with its split.
- `kl_decomposition`: where a grid KL(p || q) comes from. With the cells split into the regions
  near each mode and the rest, the chain rule of KL gives exactly

      KL(p || q) = KL(P_in || Q_in)                           (mass near the modes vs outside)
                 + P_in KL(P_k / P_in || Q_k / Q_in)          (the modes' relative shares)
                 + sum_r P_r KL(p(. | r) || q(. | r))         (shapes within each region),

  with P_r, Q_r the two distributions' masses in region r.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class KnownDensity(Protocol):
    """What the grid measures need of a true distribution (`src.data.toy_distributions`)."""

    @property
    def bounds(self) -> tuple[float, float]: ...

    @property
    def modes(self) -> Tensor: ...

    @property
    def scale(self) -> float: ...

    def log_prob(self, x: Tensor) -> Tensor: ...

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


def mode_coverage(
    samples: Tensor, modes: Tensor, scale: float, n_std: float = 3.0, min_share: float = 0.2
) -> dict[str, float]:
    """`modes_covered` (count), `mode_share` (covered / all) and `high_quality` (share of samples
    within `n_std` * `scale` of their nearest mode)."""
    if len(modes) == 0:
        raise ValueError("mode_coverage needs a distribution with modes (8gaussians, rings)")
    distance, nearest = torch.cdist(samples.double(), modes.double()).min(dim=1)
    close = distance <= n_std * scale
    counts = torch.bincount(nearest[close], minlength=len(modes))
    covered = counts >= min_share * len(samples) / len(modes)
    return {
        "modes_covered": float(covered.sum()),
        "mode_share": float(covered.double().mean()),
        "high_quality": float(close.double().mean()),
    }


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] = (0.1, 0.3, 1.0)) -> float:
    """Unbiased MMD^2 between samples x (n, d) and y (m, d) with a sum of Gaussian kernels."""
    x, y = x.double(), y.double()

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        sq = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-sq / (2 * s**2)) for s in bandwidths)

    n, m = len(x), len(y)
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def mode_regions(points: Tensor, modes: Tensor, radius: float) -> Tensor:
    """Region of each point (n, 2): the index of its nearest mode when within `radius`, else
    len(modes) ("outside")."""
    distance, nearest = torch.cdist(points.double(), modes.double()).min(dim=1)
    return torch.where(distance <= radius, nearest, len(modes))


def kl_decomposition(
    log_p: Tensor, log_q: Tensor, region: Tensor, n_modes: int
) -> dict[str, float]:
    """`kl_mass`, `kl_shares`, `kl_within` (nats; they sum to KL(p || q)) for two densities given
    as unnormalised log values on the same cells; `region` (cells,) from `mode_regions`: 0 to
    n_modes - 1 for the modes, n_modes for the outside."""
    lp = torch.log_softmax(log_p.detach().double().flatten(), 0)
    lq = torch.log_softmax(log_q.detach().double().flatten(), 0)
    region = region.to(lp.device)
    p, q = lp.exp(), lq.exp()
    mass_p, mass_q = _region_mass(p, region, n_modes + 1), _region_mass(q, region, n_modes + 1)
    conditional_p, conditional_q = p / mass_p[region], q / mass_q[region]
    within = _kl_terms(p, conditional_p.log() - conditional_q.log())
    in_p, in_q = mass_p[:n_modes].sum(), mass_q[:n_modes].sum()
    inside_p, inside_q = torch.stack([in_p, 1 - in_p]), torch.stack([in_q, 1 - in_q])
    mass = _kl_terms(inside_p, inside_p.log() - inside_q.log())
    shares_p, shares_q = mass_p[:n_modes] / in_p, mass_q[:n_modes] / in_q
    shares = in_p * _kl_terms(shares_p, shares_p.log() - shares_q.log())
    return {"kl_mass": float(mass), "kl_shares": float(shares), "kl_within": float(within)}


def _region_mass(prob: Tensor, region: Tensor, n_regions: int) -> Tensor:
    masses = torch.zeros(n_regions, dtype=prob.dtype, device=prob.device)
    return masses.index_add_(0, region, prob)


def _kl_terms(weight: Tensor, log_ratio: Tensor) -> Tensor:
    """sum weight * log_ratio, with the terms of zero weight 0 (0 log 0 = 0)."""
    return torch.where(weight > 0, weight * log_ratio, torch.zeros_like(weight)).sum()


def grid_points(
    bounds: tuple[float, float], n: int = 200, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """Cell midpoints of an n x n grid over `[lo, hi]^2`.

    Returns `(xs, ys, points)` with `xs`, `ys` of shape (n,) and `points` of shape (n, n, 2) where
    `points[i, j] = (xs[j], ys[i])` (rows are y, as `imshow(..., origin="lower")` expects). All
    cells have area ((hi - lo) / n)^2.
    """
    if n < 1:
        raise ValueError(f"grid size must be >= 1, got {n}")
    lo, hi = bounds
    xs = lo + (torch.arange(n, dtype=dtype) + 0.5) * ((hi - lo) / n)
    ys = xs.clone()
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([xx, yy], dim=-1)


def grid_log_density(
    dist: KnownDensity, n: int = 200, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """`(xs, ys, logp)`: the true log density at the cell midpoints of an n x n grid over
    `dist.bounds`, with `logp[i, j] = log p(xs[j], ys[i])` (see `grid_points`)."""
    xs, ys, points = grid_points(dist.bounds, n, dtype)
    return xs, ys, dist.log_prob(points)


def kl_on_grid(log_p_true: Tensor, log_q_unnormalised: Tensor) -> float:
    """KL(true || model) in nats between two densities given as log values on the same grid.

    Both are normalised numerically over the grid cells (a softmax over all cells, which is exact
    for equal-area cells), i.e. treated as discrete distributions over cells. Cells where the true
    density is 0 (`-inf`) contribute 0; a model `-inf` where the true density is positive gives
    `inf`. NaN in either input gives NaN (as does `+inf` in the model).
    """
    if log_p_true.shape != log_q_unnormalised.shape:
        raise ValueError(
            f"shape mismatch: {tuple(log_p_true.shape)} vs {tuple(log_q_unnormalised.shape)}"
        )
    lp = log_p_true.detach().to(torch.float64).flatten()
    lq = log_q_unnormalised.detach().to(torch.float64).flatten()
    if lp.isnan().any() or lq.isnan().any():
        return math.nan
    support = lp > -math.inf
    if not support.any():
        raise ValueError("the true density is zero on every grid cell")
    lp = lp - torch.logsumexp(lp, dim=0)
    if (lq[support] == -math.inf).any():
        return math.inf
    lq = lq - torch.logsumexp(lq, dim=0)
    lp, lq = lp[support], lq[support]
    return float((lp.exp() * (lp - lq)).sum())


def grid_kl_terms(log_p: Tensor, log_q: Tensor, dist: KnownDensity) -> dict[str, float]:
    """`kl` = KL(true || model) on the grid and, for distributions with modes, its split into
    `kl_mass`, `kl_shares`, `kl_within` (`kl_decomposition`, regions of 3 sigma)."""
    terms = {"kl": kl_on_grid(log_p, log_q)}
    if len(dist.modes):
        _, _, points = grid_points(dist.bounds, log_p.shape[0])
        region = mode_regions(points.reshape(-1, 2), dist.modes, 3 * dist.scale)
        terms.update(kl_decomposition(log_p, log_q, region, len(dist.modes)))
    return terms
