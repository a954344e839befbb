"""Send image grids, matplotlib figures and text to every TensorBoard logger of a trainer, and
the grids and figures to every MLflow logger (as the run's images and artifacts) and every W&B
logger (as media) too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure


def _tensorboards(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def _mlflows(trainer: pl.Trainer) -> list[MLFlowLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger) and lg.run_id]


def _wandbs(trainer: pl.Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def log_image_grid(trainer: pl.Trainer, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
    """Log a (N, C, H, W) batch in [0, 1] as one grid image at the current global step."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
    for lg in _tensorboards(trainer):
        lg.experiment.add_image(tag, grid, global_step=trainer.global_step)
    mlflows, wandbs = _mlflows(trainer), _wandbs(trainer)
    if mlflows or wandbs:
        pixels = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        for lg in mlflows:
            lg.experiment.log_image(lg.run_id, pixels, key=tag, step=trainer.global_step)
        for lg in wandbs:
            lg.log_image(tag, [pixels], step=trainer.global_step)


def log_figure(trainer: pl.Trainer, tag: str, figure: Figure) -> None:
    """Log a matplotlib figure (closed afterwards) at the current global step."""
    import matplotlib.pyplot as plt

    for lg in _tensorboards(trainer):
        lg.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)
    for lg in _mlflows(trainer):
        name = f"figures/{tag}/step_{trainer.global_step:07d}.png"
        lg.experiment.log_figure(lg.run_id, figure, name)
    for lg in _wandbs(trainer):
        lg.log_image(tag, [figure], step=trainer.global_step)
    plt.close(figure)


def log_histogram(trainer: pl.Trainer, tag: str, values: torch.Tensor) -> None:
    """Log the values' histogram at the current global step."""
    for lg in _tensorboards(trainer):
        lg.experiment.add_histogram(tag, values.detach().cpu(), global_step=trainer.global_step)


def log_text(trainer: pl.Trainer, tag: str, text: str) -> None:
    """Log markdown text (TensorBoard's TEXT tab) at the current global step."""
    for lg in _tensorboards(trainer):
        lg.experiment.add_text(tag, text, global_step=trainer.global_step)


def has_image_logger(trainer: pl.Trainer) -> bool:
    loggers = _tensorboards(trainer) or _mlflows(trainer) or _wandbs(trainer)
    return bool(loggers) and not trainer.sanity_checking
