"""2-d toy distributions with exact (or numerically exact) log densities.

GAN and energy-model experiments train on these and then compare the learned density with the
truth on a grid (`src.metrics.toy2d`: `grid_log_density` + `kl_on_grid`). Every distribution has

- `sample(n, generator) -> (x, labels)`: `x` float32 of shape (n, 2), `labels` int64 of shape (n,)
  holding the mixture component each point was drawn from (see each class for its meaning);
- `log_prob(x)`: the true log density at points of shape (..., 2), computed in float64 and
  returned in the dtype of `x`; `-inf` where the density is zero;
- `modes`: (M, 2) float32 mode centres where that is meaningful, else an empty (0, 2) tensor;
- `scale`: the per-mode (noise) standard deviation;
- `bounds`: `(lo, hi)`, a square box `[lo, hi]^2` holding essentially all of the mass (all but
  the Gaussian tails beyond 6 standard deviations), used for density grids;
- `num_components`: the number of distinct labels.

Distributions (the names are the config strings, see `make_distribution`):

- "8gaussians": equal mixture of 8 isotropic Gaussians centred on a circle.
- "rings": equal mixture of concentric rings with a folded-normal radial profile.
- "checkerboard": uniform on the black squares of a 4x4 board on [-2, 2]^2.
- "moons": sklearn-style two moons convolved with Gaussian noise; its density is an integral over
  the arc parameter, evaluated by Gauss-Legendre quadrature, so exact up to quadrature error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

_LOG_2PI = math.log(2.0 * math.pi)
# How many noise standard deviations of padding `bounds` leaves around the noiseless support.
_PAD_STDS = 6.0
# |x| is clamped to this in the ring density, whose 1/(2π|x|) factor is singular at the origin.
_MIN_RADIUS = 1e-12
# Rough cap on the number of float64 elements of one chunk of the moons quadrature.
_QUAD_CHUNK_ELEMS = 1 << 20


def _empty_modes() -> Tensor:
    return torch.zeros(0, 2, dtype=torch.float32)


def _as_points(x: Tensor) -> tuple[Tensor, torch.dtype]:
    """`x` as float64 points of shape (..., 2), plus the dtype to return log densities in."""
    if x.shape[-1:] != (2,):
        raise ValueError(f"expected points of shape (..., 2), got {tuple(x.shape)}")
    out_dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    return x.to(torch.float64), out_dtype


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"number of samples must be >= 0, got {n}")


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value}")


class Toy2dDistribution:
    """Base class of the toy distributions; subclasses are frozen dataclasses."""

    name: ClassVar[str]

    @property
    def modes(self) -> Tensor:
        """(M, 2) float32 mode centres, or an empty (0, 2) tensor where not meaningful."""
        return _empty_modes()

    @property
    def scale(self) -> float:
        """The per-mode (noise) standard deviation."""
        raise NotImplementedError

    @property
    def bounds(self) -> tuple[float, float]:
        """`(lo, hi)` such that `[lo, hi]^2` holds essentially all the mass."""
        raise NotImplementedError

    @property
    def num_components(self) -> int:
        """Number of distinct sample labels."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`n` points, float32 (n, 2), and their int64 component labels (n,)."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density at points (..., 2), in the dtype of `x` (float64 inside)."""
        raise NotImplementedError


class _AroundACircle:
    """Noise scale and box of the mixtures laid out up to a circle of `radius`, noise `std`."""

    radius: float
    std: float

    @property
    def scale(self) -> float:
        return float(self.std)

    @property
    def bounds(self) -> tuple[float, float]:
        hi = self.radius + _PAD_STDS * self.std
        return (-hi, hi)


@dataclass(frozen=True)
class EightGaussians(_AroundACircle, Toy2dDistribution):
    """Equal mixture of 8 isotropic Gaussians with std `std`, centred at angles 2πk/8 on a circle
    of radius `radius`. Labels are the component k = 0..7; `modes` are the 8 centres."""

    radius: float = 2.0
    std: float = 0.1
    name: ClassVar[str] = "8gaussians"
    n_modes: ClassVar[int] = 8

    def __post_init__(self) -> None:
        _check_positive(radius=self.radius, std=self.std)

    def _centres(self, device: torch.device | None = None) -> Tensor:
        angle = torch.arange(self.n_modes, dtype=torch.float64, device=device)
        angle = angle * (2.0 * math.pi / self.n_modes)
        return self.radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)

    @property
    def modes(self) -> Tensor:
        return self._centres().float()

    @property
    def num_components(self) -> int:
        return self.n_modes

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_n(n)
        labels = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = self._centres()[labels] + self.std * noise
        return x.float(), labels

    def log_prob(self, x: Tensor) -> Tensor:
        x64, out_dtype = _as_points(x)
        d2 = (x64.unsqueeze(-2) - self._centres(x64.device)).square().sum(-1)  # (..., 8)
        log_comp = -0.5 * d2 / self.std**2 - _LOG_2PI - 2.0 * math.log(self.std)
        return (torch.logsumexp(log_comp, dim=-1) - math.log(self.n_modes)).to(out_dtype)


@dataclass(frozen=True)
class Rings(_AroundACircle, Toy2dDistribution):
    """Equal mixture of `n_rings` concentric rings with radii r_k = radius * (k+1) / n_rings.

    A point has a uniform angle and radius |N(r_k, std^2)| (a folded normal), so the exact density
    is p(x) = sum_k (1/K) [φ((|x|-r_k)/s) + φ((|x|+r_k)/s)] / s / (2π|x|). The 1/|x| factor makes
    the density (integrably) infinite at the origin; |x| is clamped to 1e-12 there, so avoid grids
    with a point exactly at 0 (an even grid size never has one). Labels are the ring index k;
    `modes` is empty (the modes are circles, see `radii`).
    """

    n_rings: int = 3
    radius: float = 2.0
    std: float = 0.08
    name: ClassVar[str] = "rings"

    def __post_init__(self) -> None:
        _check_positive(n_rings=self.n_rings, radius=self.radius, std=self.std)

    def _radii(self, device: torch.device | None = None) -> Tensor:
        k = torch.arange(1, self.n_rings + 1, dtype=torch.float64, device=device)
        return self.radius * k / self.n_rings

    @property
    def radii(self) -> Tensor:
        """The ring radii r_k, float32 (n_rings,)."""
        return self._radii().float()

    @property
    def num_components(self) -> int:
        return self.n_rings

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_n(n)
        labels = torch.randint(0, self.n_rings, (n,), generator=generator)
        angle = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, generator=generator, dtype=torch.float64)
        r = (self._radii()[labels] + self.std * noise).abs()
        x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=-1)
        return x.float(), labels

    def log_prob(self, x: Tensor) -> Tensor:
        x64, out_dtype = _as_points(x)
        rho = torch.linalg.vector_norm(x64, dim=-1).clamp_min(_MIN_RADIUS)
        radii = self._radii(x64.device)
        s = self.std
        z_near = (rho.unsqueeze(-1) - radii) / s
        z_far = (rho.unsqueeze(-1) + radii) / s
        # log of the folded-normal radial density of each ring, (..., K)
        log_radial = torch.logaddexp(-0.5 * z_near.square(), -0.5 * z_far.square())
        log_radial = log_radial - 0.5 * _LOG_2PI - math.log(s)
        log_r = torch.logsumexp(log_radial, dim=-1) - math.log(self.n_rings)
        return (log_r - torch.log(2.0 * math.pi * rho)).to(out_dtype)


@dataclass(frozen=True)
class Checkerboard(Toy2dDistribution):
    """Uniform on the black squares of an `n_squares` x `n_squares` board on [-w, w]^2
    (w = `half_width`); square (i, j) (column i, row j, from the lower-left corner) is black when
    i + j is even. With the defaults (4x4 on [-2, 2]^2) the density is 1/8 on the 8 black squares.

    Labels index the black squares 0..num_components-1, row by row from the bottom. `modes` is
    empty; `scale` is the std of one coordinate within a square, side / sqrt(12).
    """

    n_squares: int = 4
    half_width: float = 2.0
    name: ClassVar[str] = "checkerboard"

    def __post_init__(self) -> None:
        _check_positive(n_squares=self.n_squares, half_width=self.half_width)

    @property
    def side(self) -> float:
        return 2.0 * self.half_width / self.n_squares

    def _black_squares(self) -> Tensor:
        """(num_components, 2) int64 (column, row) of the black squares."""
        n = self.n_squares
        cells = [(i, j) for j in range(n) for i in range(n) if (i + j) % 2 == 0]
        return torch.tensor(cells, dtype=torch.long)

    @property
    def scale(self) -> float:
        return self.side / math.sqrt(12.0)

    @property
    def bounds(self) -> tuple[float, float]:
        return (-self.half_width, self.half_width)

    @property
    def num_components(self) -> int:
        return (self.n_squares**2 + 1) // 2

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_n(n)
        labels = torch.randint(0, self.num_components, (n,), generator=generator)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        corner = self._black_squares()[labels].to(torch.float64)
        x = -self.half_width + (corner + u) * self.side
        return x.float(), labels

    def log_prob(self, x: Tensor) -> Tensor:
        x64, out_dtype = _as_points(x)
        w = self.half_width
        inside = ((x64 >= -w) & (x64 < w)).all(dim=-1)
        # clamp first so that far-away or infinite points never overflow the integer cast
        cell = torch.floor((x64.clamp(-w, w) + w) / self.side).long()
        black = inside & (cell.sum(dim=-1) % 2 == 0)
        log_density = -math.log(self.num_components * self.side**2)
        out = torch.full(x64.shape[:-1], -math.inf, dtype=torch.float64, device=x64.device)
        out = out.masked_fill(black, log_density)
        out = out.masked_fill(x64.isnan().any(dim=-1), math.nan)
        return out.to(out_dtype)


@dataclass(frozen=True)
class Moons(Toy2dDistribution):
    """Two moons as in sklearn's make_moons, centred, scaled and blurred by Gaussian noise.

    Moon 0 is the arc (cos t, sin t), moon 1 the arc (1 - cos t, 0.5 - sin t), t ~ U[0, π], each
    with weight 1/2; a noiseless point a(t) becomes (a(t) - (0.5, 0.25)) * scale_factor, then
    isotropic N(0, std^2) noise is added. The density is the convolution

        p(x) = 1/2 sum_moons ∫_0^π (1/π) N(x; a(t), std^2 I) dt,

    evaluated by quadrature in t: [0, π] is cut into `n_panels` equal panels with an 8-point
    Gauss-Legendre rule on each, and points are processed in chunks so memory stays bounded for
    any number of them. It is numerically exact up to quadrature error. With `n_panels=None` the
    panels are made about std / 2 long along the arc (95 per moon by default); with the default
    parameters that keeps the error in log p below ~1e-6 everywhere in `bounds` (tails beyond the
    arc tips included). The relative error grows only far out in the tails, tens of stds from the
    arcs, where the density is negligible anyway.
    Labels are the moon index 0 (upper) / 1 (lower).
    """

    scale_factor: float = 1.5
    std: float = 0.1
    n_panels: int | None = None
    name: ClassVar[str] = "moons"
    centre: ClassVar[tuple[float, float]] = (0.5, 0.25)
    gauss_order: ClassVar[int] = 8

    def __post_init__(self) -> None:
        _check_positive(scale_factor=self.scale_factor, std=self.std)
        if self.n_panels is not None:
            _check_positive(n_panels=self.n_panels)

    @property
    def panels(self) -> int:
        """The number of quadrature panels per moon actually used."""
        if self.n_panels is not None:
            return self.n_panels
        return math.ceil(math.pi * self.scale_factor / (0.5 * self.std))

    def _arcs(self, t: Tensor, moon: Tensor) -> Tensor:
        """Noiseless points (..., 2) of `moon` (0 or 1, broadcast with `t`) at parameters `t`."""
        cos, sin = torch.cos(t), torch.sin(t)
        upper = torch.stack([cos, sin], dim=-1)
        lower = torch.stack([1.0 - cos, 0.5 - sin], dim=-1)
        pts = torch.where((moon == 0).unsqueeze(-1), upper, lower)
        centre = torch.tensor(self.centre, dtype=pts.dtype, device=pts.device)
        return (pts - centre) * self.scale_factor

    def _nodes(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Quadrature nodes on both arcs (N, 2) and their log weights (N,), summing to 1."""
        g, w = np.polynomial.legendre.leggauss(self.gauss_order)
        half = math.pi / self.panels / 2.0
        mids = (2.0 * np.arange(self.panels) + 1.0) * half
        t = torch.from_numpy((mids[:, None] + half * g).ravel()).to(device)
        log_w = torch.from_numpy(np.log(np.tile(w * half / math.pi / 2.0, self.panels)))
        moon = torch.arange(2, device=device).repeat_interleave(t.shape[0])
        return self._arcs(t.repeat(2), moon), log_w.to(device).repeat(2)

    @property
    def scale(self) -> float:
        return float(self.std)

    @property
    def bounds(self) -> tuple[float, float]:
        # centred arcs span x in [-1.5, 1.5] and y in [-0.75, 0.75] before scaling
        hi = 1.5 * self.scale_factor + _PAD_STDS * self.std
        return (-hi, hi)

    @property
    def num_components(self) -> int:
        return 2

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_n(n)
        labels = torch.randint(0, 2, (n,), generator=generator)
        t = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = self._arcs(t, labels) + self.std * noise
        return x.float(), labels

    def log_prob(self, x: Tensor) -> Tensor:
        x64, out_dtype = _as_points(x)
        flat = x64.reshape(-1, 2)
        nodes, log_w = self._nodes(x64.device)
        inv_var = 1.0 / self.std**2
        # log N(x; a, s^2 I) = x.a/s^2 - |a|^2/(2s^2) - |x|^2/(2s^2) - log(2π s^2)
        weight = nodes.T * inv_var
        bias = log_w - 0.5 * inv_var * nodes.square().sum(-1)
        chunk = max(1, _QUAD_CHUNK_ELEMS // nodes.shape[0])
        out = torch.empty(flat.shape[0], dtype=torch.float64, device=x64.device)
        for start in range(0, flat.shape[0], chunk):
            log_k = torch.addmm(bias, flat[start : start + chunk], weight)
            peak = log_k.amax(dim=-1, keepdim=True)  # finite: every node has finite log_k
            lse = log_k.sub_(peak).exp_().sum(dim=-1).log_() + peak.squeeze(-1)
            out[start : start + chunk] = lse
        out = out - 0.5 * inv_var * flat.square().sum(-1) - _LOG_2PI - 2.0 * math.log(self.std)
        out = out.masked_fill(flat.isinf().any(dim=-1) & ~flat.isnan().any(dim=-1), -math.inf)
        return out.reshape(x64.shape[:-1]).to(out_dtype)


DISTRIBUTIONS: dict[str, type[Toy2dDistribution]] = {
    cls.name: cls for cls in (EightGaussians, Rings, Checkerboard, Moons)
}


def available_distributions() -> list[str]:
    """The registered distribution names, sorted."""
    return sorted(DISTRIBUTIONS)


def distribution_class(name: str) -> type[Toy2dDistribution]:
    try:
        return DISTRIBUTIONS[name]
    except KeyError:
        available = ", ".join(available_distributions())
        raise ValueError(f"unknown toy distribution {name!r}; available: {available}") from None


def make_distribution(name: str, **kwargs: Any) -> Toy2dDistribution:
    """The distribution registered as `name`, built with `kwargs` (its dataclass fields).

    Raises ValueError for an unknown name (listing the available ones) and TypeError for a keyword
    the distribution does not take.
    """
    return distribution_class(name)(**kwargs)
