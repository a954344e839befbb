"""Vocabularies of tagging models: token strings to ids and back, one owner for the data readers
and the models.

A vocabulary is a list of tokens whose position is the id: `<pad>` (0), `<unk>` (1), then the
tokens of the training sentences seen at least `min_freq` times, most frequent first, ties in
order of first occurrence. A token it does not hold is `<unk>`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def build_vocab(sentences: Iterable[tuple[Sequence[str], object]], min_freq: int = 1) -> list[str]:
    """`<pad>`, `<unk>`, then tokens seen >= min_freq times by decreasing count, ties in order of
    first occurrence."""
    counts = Counter(chain.from_iterable(tokens for tokens, _ in sentences))
    ranked = sorted(counts.items(), key=lambda item: -item[1])  # stable: ties stay first-seen
    return [PAD, UNK, *(t for t, n in ranked if n >= min_freq and t not in (PAD, UNK))]


def encode_tokens(tokens: Sequence[str], vocab: Sequence[str] | dict[str, int]) -> torch.Tensor:
    """Token ids as a LongTensor, `<unk>` (1) for tokens not in `vocab` (a list, or a dict
    token -> id, faster when encoding many sentences)."""
    index = vocab if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
    return torch.tensor([index.get(t, UNK_ID) for t in tokens], dtype=torch.long)


class TokenIndex(dict):
    """token -> id, `<unk>`'s id for a token it does not hold."""

    def __missing__(self, token: str) -> int:
        return UNK_ID
