"""Measures and pictures of a model of 2-d toy data against the data's true density, written once.

    callbacks:
      toy_density:
        _target_: src.callbacks.toy_density.ToyDensityCallback

It needs a data module with a `distribution` that has a known density (`data=toy2d`;
`src.metrics.toy2d.KnownDensity`) and a model with one or more of these protocols; what it
measures at the end of every validation and test epoch follows from which:

- `log_density(x)` (an unnormalised log p, (N, 2) -> (N,); EBM, NCE, the MEG energy): on the
  cell midpoints of a `grid_size` x `grid_size` grid over the data's box,
  `kl` = KL(true || model) with both normalised over the cells, and, for distributions with modes,
  its split into `kl_mass` + `kl_shares` + `kl_within` (`src.metrics.toy2d.kl_decomposition`);
  `log_z_grid` = log of the midpoint rule's integral of exp(log_density) over the box; `kl_<name>`
  for each reference density the model offers with `reference_log_densities()` (NCE's noise q).
  TensorBoard: the true density next to the model's (`<stage>/density`).
- `sample(n, generator)` (WGAN-GP, MEG): of `n_samples` samples drawn with the generator seeded
  `noise_seed`, `mmd` against 2000 true samples (seeded `seed`) and, for distributions with modes,
  `modes_covered`, `mode_share`, `high_quality` (`src.metrics.toy2d.mode_coverage`). The density
  figure shows `n_figure_samples` of them.
- `critic` (a module D(x); WGAN-GP, MEG): TensorBoard shows its contour with real and generated
  points (`<stage>/critic_contour`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning.pytorch as pl
import torch

from src.evaluation.figures import density_figure, function_figure
from src.metrics.toy2d import (
    KnownDensity,
    grid_kl_terms,
    grid_log_density,
    grid_points,
    kl_on_grid,
    mmd,
    mode_coverage,
)
from src.utils.bounds import NonNegativeInt, PositiveInt
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure

N_TRUTH = 2000  # true samples for the MMD and the figures


class ToyDensityCallback(pl.Callback):
    evaluation = True  # eval.py evaluates a checkpoint with it too

    def __init__(
        self,
        grid_size: PositiveInt = 200,
        n_samples: NonNegativeInt = 10000,
        n_figure_samples: NonNegativeInt = 1000,
        seed: int = 0,
        noise_seed: int = 999_999,
    ) -> None:
        self.grid_size, self.n_samples = grid_size, n_samples
        self.n_figure_samples, self.seed, self.noise_seed = n_figure_samples, seed, noise_seed
        self._truth: dict[str, torch.Tensor] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not (_has(pl_module, "log_density") or _has(pl_module, "sample")):
            raise UserError(
                f"callbacks.toy_density measures a density or samples; {type(pl_module).__name__} "
                "has neither log_density(x) nor sample(n, generator): remove the callback."
            )
        distribution = getattr(trainer.datamodule, "distribution", None)
        if not isinstance(distribution, KnownDensity):
            raise UserError(
                "callbacks.toy_density compares with a known density: use data=toy2d "
                "(data.name=8gaussians|rings|checkerboard|moons) or remove the callback."
            )
        if distribution is not getattr(self, "distribution", None):
            self._truth = {}  # the true grid and samples are the data's: drawn again for new data
        self.distribution = distribution

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module, "test")

    @torch.no_grad()
    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.sanity_checking:
            return
        figures = has_image_logger(trainer)
        metrics: dict[str, float] = {}
        samples = truth = None
        n = max(self.n_samples, self.n_figure_samples if figures else 0)
        if _has(pl_module, "sample") and n:
            noise = torch.Generator(device=pl_module.device).manual_seed(self.noise_seed)
            samples, truth = pl_module.sample(n, noise).cpu(), self.truth("samples")
            if self.n_samples:
                metrics.update(self.sample_measures(samples[: self.n_samples], truth))
        log_q = None
        if _has(pl_module, "log_density"):
            log_q = self.on_grid(pl_module.log_density, pl_module.device)
            metrics.update(self.grid_measures(log_q, pl_module))
        pl_module.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=True)
        if figures:
            self._figures(trainer, pl_module, stage, log_q, samples, truth)

    def truth(self, what: str) -> torch.Tensor:
        """The true log density on the grid ("grid") or N_TRUTH true samples ("samples"), once."""
        if what not in self._truth:
            if what == "grid":
                self._truth[what] = grid_log_density(self.distribution, self.grid_size)[2]
            else:
                generator = torch.Generator().manual_seed(self.seed)
                self._truth[what] = self.distribution.sample(N_TRUTH, generator)[0]
        return self._truth[what]

    @torch.no_grad()
    def on_grid(
        self, log_density: Callable[[torch.Tensor], torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """A log density's values at the grid's cell midpoints, (n, n) float64 on the CPU."""
        n = self.grid_size
        _, _, points = grid_points(self.distribution.bounds, n, torch.float32)
        values = log_density(points.reshape(-1, 2).to(device))
        return values.reshape(n, n).double().cpu()

    def grid_measures(self, log_q: torch.Tensor, pl_module: pl.LightningModule) -> dict[str, float]:
        log_p = self.truth("grid")
        metrics = grid_kl_terms(log_p, log_q, self.distribution)
        lo, hi = self.distribution.bounds
        cell_area = ((hi - lo) / self.grid_size) ** 2
        metrics["log_z_grid"] = float(log_q.logsumexp((0, 1))) + math.log(cell_area)
        references = getattr(pl_module, "reference_log_densities", dict)()
        for name, log_density in references.items():
            metrics[f"kl_{name}"] = kl_on_grid(log_p, self.on_grid(log_density, pl_module.device))
        return metrics

    def sample_measures(self, samples: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
        metrics = {"mmd": mmd(samples[:N_TRUTH], truth)}
        if len(self.distribution.modes):
            modes, scale = self.distribution.modes, self.distribution.scale
            metrics.update(mode_coverage(samples, modes, scale))
        return metrics

    def _figures(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        stage: str,
        log_q: torch.Tensor | None,
        samples: torch.Tensor | None,
        truth: torch.Tensor | None,
    ) -> None:
        bounds, k = self.distribution.bounds, self.n_figure_samples
        shown = {"samples": samples[:k]} if samples is not None and k else None
        if log_q is not None:
            name = type(pl_module).__name__
            figure = density_figure(self.truth("grid"), log_q, bounds, name, shown)
            log_figure(trainer, f"{stage}/density", figure)
        critic = getattr(pl_module, "critic", None)
        if isinstance(critic, torch.nn.Module) and shown and truth is not None:
            points = {"real": truth[:k], "generated": shown["samples"]}
            title = "critic D(x), samples"
            figure = function_figure(critic, bounds, title, points, device=pl_module.device)
            log_figure(trainer, f"{stage}/critic_contour", figure)


def _has(module: pl.LightningModule, name: str) -> bool:
    return callable(getattr(module, name, None))
