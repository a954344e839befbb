"""The pictures the models send to TensorBoard, each drawn once, from plain tensors.

Every function returns a matplotlib Figure (Agg backend) for `src.utils.images.log_figure`, or,
for image grids, the tensor to hand to `log_image_grid`. What a figure shows is computed here and
tested (tests/test_figures.py); how it looks (sizes, colours, markers) is the constants below.

- `density_figure`: the true density next to the model's, both normalised over the grid's cells
  and on one colour scale, the model titled with KL(true || model), and a panel of samples.
- `function_figure`: a function over the toy data's box as filled contours, with points on top
  (the WGAN critic D(x) with real and generated samples).
- `latent_scatter_figure` and `manifold_codes`: a 2-d latent's posterior means by class, and the
  codes at the normal quantiles whose decodings tile the latent manifold (Kingma & Welling,
  fig. 4; kexue.fm/archives/5253).
- `coupling_rows`: a capsule net's routing coefficients c_ij by position, one map per class.
- `pairs_figure`: two-item test images titled with the top-2 classes and their scores.
- `transitions_figure`: a CRF's transition scores g(i, j) as a heatmap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from src.metrics.toy2d import kl_on_grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL = 4.4  # inches per square panel
PAIR_PANEL = (1.6, 3.2)  # inches per test-pair image and its title
SCATTER = {"s": 2, "alpha": 0.5}
CLASS_SCATTER = {"s": 3}
LEGEND = {"loc": "upper right", "markerscale": 4, "fontsize": 7}
SMALL = {"fontsize": 7}
CELL_TEXT = {"ha": "center", "va": "center", "fontsize": 8}
TICKS = {"fontsize": 8}
DENSITY_MAP = "viridis"
DIVERGING_MAP = "RdBu_r"
GREY_MAP = "gray"
RIGHT, WRONG = "green", "red"
COLORBAR = {"fraction": 0.046}
MAX_CELL_TEXT = 12  # the transition heatmap writes its values up to this many tags


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_probabilities(log_density: torch.Tensor) -> torch.Tensor:
    """exp(log_density) normalised to sum 1 over the grid's cells (-inf cells give 0)."""
    flat = log_density.flatten().double()
    return torch.softmax(flat, 0).reshape(log_density.shape)


def density_figure(
    log_p: torch.Tensor,
    log_q: torch.Tensor,
    bounds: tuple[float, float],
    model_name: str,
    samples: Mapping[str, torch.Tensor] | None = None,
) -> Figure:
    """Panels: the true density p, the model's q (`model_name`, with KL(p || q) in nats), and,
    with `samples` ({label: (N, 2) points}), the samples over the same box."""
    plt = _pyplot()
    lo, hi = bounds
    p, q = grid_probabilities(log_p), grid_probabilities(log_q)
    top = float(torch.maximum(p.max(), q.max()))
    panels = 3 if samples else 2
    fig, axes = plt.subplots(1, panels, figsize=(PANEL * panels, PANEL), squeeze=False)
    kl = kl_on_grid(log_p, log_q)
    titles = ("true density", f"{model_name}, KL(true || model) = {kl:.3f} nats")
    for ax, density, title in zip(axes[0], (p, q), titles, strict=False):
        ax.imshow(
            density.numpy(),
            origin="lower",
            extent=(lo, hi, lo, hi),
            cmap=DENSITY_MAP,
            vmin=0.0,
            vmax=top,
        )
        ax.set_title(title)
    if samples:
        ax = axes[0][2]
        for label, points in samples.items():
            points = points.detach().cpu()
            ax.scatter(points[:, 0], points[:, 1], label=label, **SCATTER)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title="samples")
        ax.legend(**LEGEND)
    fig.tight_layout()
    return fig


@torch.no_grad()
def function_figure(
    function: Callable[[torch.Tensor], torch.Tensor],
    bounds: tuple[float, float],
    title: str,
    points: Mapping[str, torch.Tensor],
    n: int = 100,
    device: torch.device | str = "cpu",
) -> Figure:
    """`function` on an n x n grid over the box as filled contours, and `points` ({label: (N, 2)})
    scattered over it."""
    plt = _pyplot()
    lo, hi = bounds
    axis = torch.linspace(lo, hi, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)
    values = function(grid.reshape(-1, 2).to(device)).reshape(n, n).float().cpu()
    fig, ax = plt.subplots(figsize=(PANEL, PANEL))
    ax.contourf(axis, axis, values, levels=20, cmap=DENSITY_MAP)
    for (label, pts), colour in zip(points.items(), ("white", WRONG, RIGHT), strict=False):
        pts = pts.detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], c=colour, label=label, **SCATTER)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=title)
    ax.legend(**LEGEND)
    return fig


def latent_scatter_figure(
    codes: torch.Tensor, labels: torch.Tensor, names: Sequence[str] | None = None
) -> Figure:
    """The (N, 2) codes, one colour per label, named by `names[label]` when given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(PANEL, PANEL))
    for c in labels.unique().tolist():
        pts = codes[labels == c].detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], label=names[c] if names else str(c), **CLASS_SCATTER)
    ax.legend(**LEGEND)
    ax.set(xlabel="z1", ylabel="z2", title="posterior means, validation set")
    return fig


def manifold_codes(n: int) -> torch.Tensor:
    """(n * n, 2) codes at the N(0, 1) quantiles 0.05..0.95, row by row from the top left: the
    first coordinate grows along a row, the second falls down the rows."""
    ticks = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    return torch.stack(torch.meshgrid(ticks, -ticks, indexing="xy"), -1).reshape(-1, 2)


def coupling_rows(
    images: torch.Tensor, coupling: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """(B * (1 + K), 1, H, W): per image, the image and then the coefficients c_ij to each class j
    averaged over the capsule types at each of the h x w positions i, each map stretched to [0, 1]
    (the coefficients differ from uniform by a few percent) and upsampled to the image size.

    `coupling` is (B, positions * types, K), ordered type-major as the primary capsules are."""
    b, _, k = coupling.shape
    maps = coupling.reshape(b, -1, *grid, k).mean(1).permute(0, 3, 1, 2)  # (B, K, h, w)
    low, high = maps.amin((2, 3), keepdim=True), maps.amax((2, 3), keepdim=True)
    maps = (maps - low) / (high - low).clamp_min(1e-8)
    maps = F.interpolate(maps, size=images.shape[-2:], mode="nearest")
    return torch.cat([images, maps], dim=1).flatten(0, 1)[:, None]


def pairs_figure(
    images: torch.Tensor, scores: torch.Tensor, pairs: torch.Tensor, names: Sequence[str]
) -> Figure:
    """The images in two rows, each titled with its top-2 classes and scores, green when they
    are the true pair and red otherwise."""
    plt = _pyplot()
    columns = (len(images) + 1) // 2
    width, height = PAIR_PANEL
    fig, axes = plt.subplots(2, columns, figsize=(width * columns, 2 * height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, score, pair in zip(axes.flat, images, scores, pairs, strict=False):
        top = score.topk(2)
        ax.imshow(image[0].detach().cpu(), cmap=GREY_MAP)
        guess = "\n".join(f"{names[int(c)][:9]} {float(s):.2f}" for s, c in zip(*top, strict=True))
        right = set(top.indices.tolist()) == set(pair.tolist())
        ax.set_title(guess, color=RIGHT if right else WRONG, **SMALL)
    fig.tight_layout()
    return fig


def transitions_figure(transitions: torch.Tensor, tags: Sequence[str]) -> Figure:
    """g(i, j) (row: from tag i, column: to tag j) on a colour scale symmetric about 0, with the
    values written in the cells when there are at most `MAX_CELL_TEXT` tags."""
    plt = _pyplot()
    g = transitions.detach().float().cpu()
    k = len(tags)
    size = min(3 * PANEL, PANEL / 2 + 0.35 * k)  # grows with the tags, up to 3 panels
    fig, ax = plt.subplots(figsize=(size, size))
    limit = float(g.abs().max())
    image = ax.imshow(g, cmap=DIVERGING_MAP, vmin=-limit, vmax=limit)
    ax.set_xticks(range(k), tags, rotation=90, **TICKS)
    ax.set_yticks(range(k), tags, **TICKS)
    ax.set(xlabel="to tag", ylabel="from tag")
    if k <= MAX_CELL_TEXT:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{g[i, j]:.1f}", **CELL_TEXT)
    fig.colorbar(image, ax=ax, **COLORBAR)
    fig.tight_layout()
    return fig
