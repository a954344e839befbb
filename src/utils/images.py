"""Send image grids, matplotlib figures and text to every TensorBoard logger of a trainer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure


def _tensorboards(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def log_image_grid(trainer: pl.Trainer, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
    """Log a (N, C, H, W) batch in [0, 1] as one grid image at the current global step."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
    for lg in _tensorboards(trainer):
        lg.experiment.add_image(tag, grid, global_step=trainer.global_step)


def log_figure(trainer: pl.Trainer, tag: str, figure: Figure) -> None:
    """Log a matplotlib figure (closed afterwards) at the current global step."""
    import matplotlib.pyplot as plt

    for lg in _tensorboards(trainer):
        lg.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)
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
    return bool(_tensorboards(trainer)) and not trainer.sanity_checking
