"""Whole batches by tensor indexing: no per-sample Python work, no collation.

`TensorBatches` is indexed by a list of indices and returns the batch of every tensor it holds;
`batch_loader` feeds it a `BatchSampler` as the sampler (with `batch_size=None`, so the DataLoader
neither batches nor collates). Under DDP Lightning wraps that sampler so that each process gets its
own share of the batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


class TensorBatches(Dataset):
    """`dataset[idx_list]` -> `(transform(first[idx]), *(rest[idx]))`."""

    def __init__(
        self,
        *tensors: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError(f"tensors of different lengths: {[len(t) for t in tensors]}")
        self.tensors, self.transform = tensors, transform

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(idx, dtype=torch.long)
        first, *rest = (t[index] for t in self.tensors)
        return (first if self.transform is None else self.transform(first), *rest)


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
        sampler=BatchSampler(order, batch_size, drop_last=train),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
