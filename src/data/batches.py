"""Whole batches by tensor indexing: no per-sample Python work, no per-sample collation.

`TensorBatches.__getitems__` takes the list of indices of a batch and returns the batch of every
tensor it holds in one `index_select` (a tenth of the time of `tensor[index]` for images);
PyTorch's DataLoader calls it when the dataset has it,
and `batch_loader` passes the result through unchanged. The batches come from the standard
`BatchSampler` DataLoader makes of `batch_size` and `drop_last`, so Lightning can rebuild it (a
DistributedSampler under DDP, a sequential one for `overfit_batches`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from src.data.resumable import ResumableLoader, noise_generator

# (first tensor of a batch, generator of its noise or None for the global RNG) -> the batch's
Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


class TensorBatches(Dataset):
    """`dataset.__getitems__(indices)` -> `(transform(first[indices], noise), *(rest[indices]))`,
    where `noise` is the batch's generator (`noise_generator(indices)`)."""

    def __init__(self, *tensors: torch.Tensor, transform: Transform | None = None) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError(f"tensors of different lengths: {[len(t) for t in tensors]}")
        self.tensors, self.transform = tensors, transform

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        first, *rest = (t.index_select(0, index) for t in self.tensors)
        if self.transform is not None:
            first = self.transform(first, noise_generator(indices))
        return (first, *rest)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([i]))


def already_batched(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function of `batch_loader`: `__getitems__` already made the batch."""
    return batch


def batch_loader(
    dataset: TensorBatches,
    batch_size: int,
    train: bool,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """Shuffled batches without the last partial one for training, in order for evaluation.
    Without `generator` the shuffle follows the global seed (`seed_everything`); training batches
    come from a `ResumableLoader`, so a run resumed mid-epoch continues exactly."""
    order = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
    return (ResumableLoader if train else DataLoader)(
        dataset,
        # batch_size and drop_last, not a BatchSampler: Lightning rebuilds a loader from its
        # arguments (DDP, overfit_batches), and a plain BatchSampler argument comes back as size 1
        batch_size=batch_size,
        sampler=order,
        drop_last=train,
        collate_fn=already_batched,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
