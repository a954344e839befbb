"""Batches of sentences of similar length, so a batch pads little (the tagging data modules)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

from src.utils.bounds import PositiveInt

CHUNK_BATCHES = 50  # training batches sorted by length together


class BucketBatchSampler(BatchSampler):
    """Batches of similar length over the indices `sampler` yields.

    The drawn indices are taken in chunks of `chunk_batches * batch_size` (all at once when
    None), each sorted by length (stably) and cut into batches. With `shuffle` the batches are
    ordered by their earliest drawn index, else kept shortest first. `drop_last` drops the last
    drawn indices (no particular lengths); without it they join the last chunk, whose longest
    batch is then the partial one. Either way there are as many batches as a plain BatchSampler
    gives, so under DDP every rank gets as many.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Sequence[int],
        batch_size: PositiveInt,
        drop_last: bool,
        lengths: Sequence[int],
        chunk_batches: PositiveInt | None = CHUNK_BATCHES,
        shuffle: bool = True,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.chunk_batches, self.shuffle = chunk_batches, shuffle

    def _batches(self, drawn: list[int]) -> list[list[int]]:
        """`drawn` sorted by length and cut into batches."""
        positions = torch.sort(self.lengths[torch.tensor(drawn)], stable=True).indices
        batches = list(positions.split(self.batch_size))
        if self.shuffle:
            batches.sort(key=lambda b: int(b.min()))
        return [[drawn[p] for p in batch.tolist()] for batch in batches]

    def __iter__(self) -> Iterator[list[int]]:
        drawn = list(self.sampler)
        if self.drop_last:  # the last drawn, so no particular lengths
            drawn = drawn[: len(drawn) - len(drawn) % self.batch_size]
        chunk = self.chunk_batches * self.batch_size if self.chunk_batches else len(drawn)
        for start in range(0, len(drawn), max(chunk, 1)):
            yield from self._batches(drawn[start : start + chunk])
