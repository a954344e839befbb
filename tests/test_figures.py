"""What each figure of src/evaluation/figures.py shows, read back from the matplotlib objects:
the arrays behind the images, the points behind the scatters, the titles and the limits, against
values computed here (softmax by hand, the normal quantiles from the standard library, the
routing maps position by position)."""

from __future__ import annotations

import math
import statistics

import matplotlib
import numpy as np
import pytest
import torch

from src.evaluation.figures import (
    PANEL,
    coupling_rows,
    density_figure,
    function_figure,
    grid_probabilities,
    latent_scatter_figure,
    manifold_codes,
    pairs_figure,
    transitions_figure,
)

matplotlib.use("Agg")
BOUNDS = (-2.0, 3.0)


def _log_densities() -> tuple[torch.Tensor, torch.Tensor]:
    log_p = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 0.0], [1.0, -2.0, 0.0]])
    log_q = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.0]]) + 7.0
    return log_p, log_q


def _normalised(log_d: torch.Tensor) -> np.ndarray:
    e = np.exp(log_d.double().numpy())
    return e / e.sum()


def test_grid_probabilities_normalise_over_all_cells_and_give_zero_to_minus_inf() -> None:
    log_d = torch.tensor([[0.0, math.log(3.0)], [float("-inf"), 0.0]])
    expected = torch.tensor([[0.2, 0.6], [0.0, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(grid_probabilities(log_d), expected)


def test_the_density_figure_shows_both_densities_on_one_scale_and_the_kl() -> None:
    log_p, log_q = _log_densities()
    fig = density_figure(log_p, log_q, BOUNDS, "exp(-E)")
    assert tuple(fig.get_size_inches()) == pytest.approx((2 * PANEL, PANEL))
    true_ax, model_ax = fig.axes
    p, q = _normalised(log_p), _normalised(log_q)
    kl = float((p * np.log(p / q)).sum())
    assert true_ax.get_title() == "true density"
    assert model_ax.get_title() == f"exp(-E), KL(true || model) = {kl:.3f} nats"
    for ax, expected in ((true_ax, p), (model_ax, q)):
        (image,) = ax.images
        np.testing.assert_allclose(image.get_array(), expected, rtol=1e-12)
        assert list(image.get_extent()) == [-2.0, 3.0, -2.0, 3.0]
        assert image.origin == "lower"
        assert image.get_clim() == pytest.approx((0.0, max(p.max(), q.max())))
    matplotlib.pyplot.close(fig)


def test_the_density_figure_scatters_each_set_of_samples_under_its_label() -> None:
    log_p, log_q = _log_densities()
    samples = {"buffer": torch.tensor([[0.0, 1.0], [2.0, -1.0]]), "chains": torch.ones(3, 2)}
    fig = density_figure(log_p, log_q, BOUNDS, "m", samples)
    assert len(fig.axes) == 3
    assert tuple(fig.get_size_inches()) == pytest.approx((3 * PANEL, PANEL))
    ax = fig.axes[2]
    for collection, points in zip(ax.collections, samples.values(), strict=True):
        np.testing.assert_array_equal(collection.get_offsets(), points.numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["buffer", "chains"]
    assert ax.get_xlim() == BOUNDS and ax.get_ylim() == BOUNDS
    assert ax.get_aspect() == 1.0 and ax.get_title() == "samples"
    matplotlib.pyplot.close(fig)


def test_the_function_figure_evaluates_the_function_on_the_grid_with_x_varying_fastest() -> None:
    """f(x, y) = x: the grid goes row by row from (lo, lo); the filled bands are vertical, each
    spanning the box's whole height and part of its width; the levels span f's range."""
    seen: list[torch.Tensor] = []

    def f(points: torch.Tensor) -> torch.Tensor:
        seen.append(points)
        return points[:, 0]

    points = {"real": torch.tensor([[0.5, 0.5]]), "generated": torch.tensor([[1.0, 2.0]])}
    fig = function_figure(f, BOUNDS, "critic", points, n=5)
    assert tuple(fig.get_size_inches()) == pytest.approx((PANEL, PANEL))
    (grid,) = seen
    step = 5.0 / 4
    first = [[-2.0 + i * step, -2.0] for i in range(5)] + [[-2.0, -2.0 + step]]
    torch.testing.assert_close(grid[:6], torch.tensor(first))
    ax = fig.axes[0]
    contour = ax.collections[0]
    assert contour.levels[0] <= -2.0 and contour.levels[-1] >= 3.0
    for path in contour.get_paths():
        if len(path.vertices):
            xs, ys = path.vertices[:, 0], path.vertices[:, 1]
            assert ys.max() - ys.min() == pytest.approx(5.0)
            assert xs.max() - xs.min() < 2.5
    for collection, pts in zip(ax.collections[1:], points.values(), strict=True):
        np.testing.assert_array_equal(collection.get_offsets(), pts.numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["real", "generated"]
    assert ax.get_title() == "critic" and ax.get_xlim() == BOUNDS and ax.get_ylim() == BOUNDS
    matplotlib.pyplot.close(fig)


def test_the_latent_scatter_has_one_named_set_of_points_per_class() -> None:
    codes = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    fig = latent_scatter_figure(codes, labels, ["zero", "one", "two"])
    ax = fig.axes[0]
    for collection, c in zip(ax.collections, (0, 1, 2), strict=True):
        np.testing.assert_array_equal(collection.get_offsets(), codes[labels == c].numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    assert ax.get_title() == "posterior means, validation set"
    assert tuple(fig.get_size_inches()) == pytest.approx((PANEL, PANEL))
    unnamed = latent_scatter_figure(codes, labels)
    assert [t.get_text() for t in unnamed.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    matplotlib.pyplot.close("all")


def test_the_manifold_codes_are_the_normal_quantiles_row_by_row_from_the_top_left() -> None:
    n = 4
    quantiles = [statistics.NormalDist().inv_cdf(0.05 + 0.3 * i) for i in range(n)]
    expected = [[quantiles[col], -quantiles[row]] for row in range(n) for col in range(n)]
    torch.testing.assert_close(manifold_codes(n), torch.tensor(expected), atol=1e-6, rtol=0)


def test_the_coupling_rows_are_the_image_then_each_class_map_stretched_and_upsampled() -> None:
    """One image 4x4, a 2x2 grid of positions with two capsule types, three classes: the map of
    class j at position i is the mean of c_ij over the types, then mapped to [0, 1]."""
    image = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    c = torch.tensor(
        [  # type 0 at positions 0..3, then type 1; one column per class
            [0.1, 0.5, 0.4],
            [0.2, 0.5, 0.3],
            [0.3, 0.5, 0.2],
            [0.5, 0.5, 0.0],
            [0.3, 0.5, 0.2],
            [0.2, 0.5, 0.3],
            [0.1, 0.5, 0.4],
            [0.1, 0.5, 0.4],
        ]
    )[None]
    rows = coupling_rows(image, c, (2, 2))
    assert rows.shape == (4, 1, 4, 4)
    torch.testing.assert_close(rows[0], image[0])
    mean = (c[0, :4] + c[0, 4:]) / 2  # (positions, classes)
    for j in range(3):
        m = mean[:, j]
        stretched = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else m * 0
        expected = stretched.reshape(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)
        torch.testing.assert_close(rows[1 + j, 0], expected)


def test_the_pairs_figure_titles_each_image_with_its_top_two_coloured_by_correctness() -> None:
    images = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    scores = torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6], [0.95, 0.9, 0.05], [0.5, 0.4, 0.3]])
    pairs = torch.tensor([[0, 2], [0, 1], [1, 0], [2, 1]])
    names = ["a-very-long-name", "b", "c"]
    fig = pairs_figure(images, scores, pairs, names)
    axes = fig.axes
    assert len(axes) == 4 and not any(ax.axison for ax in axes)  # two rows of two
    assert tuple(fig.get_size_inches()) == pytest.approx((2 * 1.6, 2 * 3.2))
    expected = [
        ("a-very-lo 0.90\nc 0.80", "green"),
        ("b 0.70\nc 0.60", "red"),
        ("a-very-lo 0.95\nb 0.90", "green"),
        ("a-very-lo 0.50\nb 0.40", "red"),
    ]
    for ax, image, (title, colour) in zip(axes, images, expected, strict=True):
        assert ax.get_title() == title
        assert matplotlib.colors.same_color(ax.title.get_color(), colour)
        np.testing.assert_array_equal(ax.images[0].get_array(), image[0].numpy())
        assert ax.images[0].get_cmap().name == "gray"
    three = pairs_figure(images[:3], scores[:3], pairs[:3], names)
    assert len(three.axes) == 4 and not three.axes[3].images
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(("k", "inches"), [(3, 2.2 + 1.05), (12, 2.2 + 4.2), (13, 2.2 + 4.55)])
def test_the_transitions_figure_shows_g_on_a_symmetric_scale(k: int, inches: float) -> None:
    g = torch.linspace(-1.0, 2.5, k * k).reshape(k, k)
    tags = [f"T{i}" for i in range(k)]
    fig = transitions_figure(g, tags)
    assert tuple(fig.get_size_inches()) == pytest.approx((inches, inches))
    ax, bar = fig.axes
    (image,) = ax.images
    np.testing.assert_allclose(image.get_array(), g.numpy())
    assert image.get_clim() == pytest.approx((-2.5, 2.5))
    assert image.get_cmap().name == "RdBu_r"
    assert image.colorbar is not None and image.colorbar.ax is bar
    assert ax.get_xticklabels()[0].get_rotation() == 90
    assert [t.get_text() for t in ax.get_xticklabels()] == tags
    assert [t.get_text() for t in ax.get_yticklabels()] == tags
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("to tag", "from tag")
    texts = [t.get_text() for t in ax.texts]
    if k <= 12:
        assert texts == [f"{v:.1f}" for v in g.flatten().tolist()]
        assert ax.texts[1].get_position() == (1, 0)  # row i = from, column j = to
    else:
        assert texts == []
    matplotlib.pyplot.close(fig)


def test_the_transitions_figure_stops_growing_at_three_panels() -> None:
    fig = transitions_figure(torch.zeros(40, 40) + torch.eye(40), [f"T{i}" for i in range(40)])
    assert tuple(fig.get_size_inches()) == pytest.approx((3 * PANEL, 3 * PANEL))
    matplotlib.pyplot.close(fig)


def test_the_transition_colours_are_symmetric_about_zero() -> None:
    from src.evaluation.figures import transitions_figure

    g = torch.tensor([[-3.0, 1.0], [0.0, 2.0]])  # the largest size is a negative score
    fig = transitions_figure(g, ["B", "I"])
    assert fig.axes[0].images[0].get_clim() == (-3.0, 3.0)
    matplotlib.pyplot.close(fig)
