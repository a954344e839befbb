"""Whole batches by tensor indexing: no per-sample Python work, no per-sample collation.

`TensorBatches.__getitems__` takes the list of indices of a batch and returns the batch of every
tensor it holds in one indexing operation; PyTorch's DataLoader calls it when the dataset has it,
and `batch_loader` passes the result through unchanged. The batches come from a standard
`BatchSampler`, so Lightning can rebuild it (a DistributedSampler under DDP, a sequential one for
`overfit_batches`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

Transform = Callable[[torch.Tensor], torch.Tensor]


class TensorBatches(Dataset):
    """`dataset.__getitems__(indices)` -> `(transform(first[indices]), *(rest[indices]))`."""

    def __init__(self, *tensors: torch.Tensor, transform: Transform | None = None) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError(f"tensors of different lengths: {[len(t) for t in tensors]}")
        self.tensors, self.transform = tensors, transform

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        first, *rest = (t[index] for t in self.tensors)
        return (first if self.transform is None else self.transform(first), *rest)

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
    Without `generator` the shuffle follows the global seed (`seed_everything`)."""
    order = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(order, batch_size, drop_last=train),
        collate_fn=already_batched,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
