"""`Toy2dDataModule`: fixed train/val/test samples of a 2-d toy distribution
(`src.data.toy_distributions`), served as whole batches by tensor indexing (no per-sample
Python work). `distribution` exposes the true density to evaluation.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from src.data.batches import TensorBatches, batch_loader
from src.data.toy_distributions import Toy2dDistribution, distribution_class
from src.utils.bounds import PositiveFloat, PositiveInt


def _split_seed(seed: int, stream: int) -> int:
    """A seed for one of the independent random streams (splits, sampler) derived from `seed`."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)
    return int(state[0])


_STREAMS = {"train": 0, "val": 1, "test": 2, "train_sampler": 3}


class Toy2dDataModule(LightningDataModule):
    """Fixed train/val/test samples of a toy distribution, served by index.

    Batches are `(x, y)`: float32 points (B, 2) and the int64 component labels (B,) (see each
    distribution for what the label means). The splits are drawn once in `setup` from independent
    streams derived from `seed`; the training order is shuffled by a generator seeded from `seed`
    too, so a run is fully determined by `seed` (each `train_dataloader()` call restarts the same
    sequence of per-epoch permutations). `radius` goes to the distributions that have one
    ("8gaussians", "rings"); `std`, unless None (= the distribution's default), to those that have
    one (all but "checkerboard", which rejects it). `distribution` exposes the true density, e.g.
    `self.trainer.datamodule.distribution.log_prob(x)`.

    The loaders yield whole batches (`src.data.batches`); under DDP each process gets its share.
    """

    def __init__(
        self,
        name: str = "8gaussians",
        n_train: PositiveInt = 100_000,
        n_val: PositiveInt = 10_000,
        n_test: PositiveInt = 10_000,
        batch_size: PositiveInt = 256,
        seed: int = 0,
        radius: PositiveFloat = 2.0,
        std: PositiveFloat | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if min(n_train, n_val, n_test) < 1:
            raise ValueError(f"split sizes must be >= 1, got {(n_train, n_val, n_test)}")
        if not 1 <= batch_size <= n_train:
            raise ValueError(f"batch_size must be in [1, n_train={n_train}], got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        cls = distribution_class(name)
        accepted = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        if "radius" in accepted:
            kwargs["radius"] = radius
        if std is not None:
            if "std" not in accepted:
                raise ValueError(f"distribution {name!r} has no std parameter (set std: null)")
            kwargs["std"] = std
        self._distribution = cls(**kwargs)
        self.data_train: tuple[Tensor, Tensor] | None = None
        self.data_val: tuple[Tensor, Tensor] | None = None
        self.data_test: tuple[Tensor, Tensor] | None = None

    @property
    def example_shape(self) -> tuple[int]:
        return (2,)

    def train_examples(self) -> Tensor:
        """The training split's points, (n_train, 2): for a model that fits statistics of its
        data before training (NCE's noise)."""
        self.setup("fit")
        return self.data_train[0]

    @property
    def distribution(self) -> Toy2dDistribution:
        """The true distribution the data are drawn from."""
        return self._distribution

    def _draw(self, split: str, n: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(_split_seed(self.hparams.seed, _STREAMS[split]))
        return self._distribution.sample(n, generator)

    def setup(self, stage: str | None = None) -> None:
        """Draw the three splits (once; later calls do nothing)."""
        if self.data_train is None:
            self.data_train = self._draw("train", self.hparams.n_train)
            self.data_val = self._draw("val", self.hparams.n_val)
            self.data_test = self._draw("test", self.hparams.n_test)

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        self.setup()
        data = getattr(self, f"data_{split}")
        assert data is not None
        return data

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(
            _split_seed(self.hparams.seed, _STREAMS["train_sampler"])
        )
        return batch_loader(
            TensorBatches(*self._split("train")), self.hparams.batch_size, True, generator
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return batch_loader(TensorBatches(*self._split(split)), self.hparams.batch_size, False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
