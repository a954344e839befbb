"""Exact sample-quality measures on 2-d toy data, where the true distribution is known.

- `mode_coverage`: every sample is assigned to its nearest true mode; it is "high quality" when it
  lies within `n_std` standard deviations of that mode (for an isotropic 2-d Gaussian, 98.9% of
  its own samples lie within 3 sigma). A mode is covered when it holds at least `min_share` of the
  share a uniform spread over the modes would give it (Srivastava et al.'s VEEGAN protocol counts
  modes the same way).
- `mmd`: the unbiased squared maximum mean discrepancy with a sum of Gaussian kernels,
      MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)),
  between model samples and a large sample of the true distribution; 0 iff the two are equal.
- `kl_decomposition`: where a grid KL(p || q) comes from. With the cells split into the regions
  near each mode and the rest, the chain rule of KL gives exactly

      KL(p || q) = KL(P_in || Q_in)                           (mass near the modes vs outside)
                 + P_in KL(P_k / P_in || Q_k / Q_in)          (the modes' relative shares)
                 + sum_r P_r KL(p(. | r) || q(. | r))         (shapes within each region),

  with P_r, Q_r the two distributions' masses in region r.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


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
