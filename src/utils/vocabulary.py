"""Vocabularies of tagging models: token strings to ids and back, one owner for the data readers
and the models.

A vocabulary is a list of tokens whose position is the id: `<pad>` (0), `<unk>` (1), then the
tokens of the training sentences seen at least `min_freq` times, most frequent first, ties in
order of first occurrence. A token it does not hold is `<unk>`.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

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


MAX_WORD_CHARS = 24  # a longer word keeps its first 12 and last 12 characters


def is_word_level(sentences: Iterable[tuple[Sequence[str], object]]) -> bool:
    """Whether the tokens are words (some is longer than one character) rather than characters."""
    return any(len(t) > 1 for tokens, _ in sentences for t in tokens)


def build_chars(sentences: Iterable[tuple[Sequence[str], object]]) -> list[str]:
    """The character vocabulary of the tokens: `<pad>`, `<unk>`, then the characters by
    decreasing count, ties in order of first occurrence."""
    return build_vocab(([c for t in tokens for c in t], None) for tokens, _ in sentences)


def clip_word(token: str) -> str:
    half = MAX_WORD_CHARS // 2
    return token if len(token) <= MAX_WORD_CHARS else token[:half] + token[-half:]


def encode_chars(tokens: Sequence[str], index: dict[str, int]) -> torch.Tensor:
    """The character ids of each token, (T, L) with L the longest (clipped) token, padded with 0;
    a character `index` does not hold is `<unk>`."""
    words = [clip_word(t) for t in tokens]
    width = max(map(len, words), default=0)
    rows = [[index.get(c, UNK_ID) for c in w] + [PAD_ID] * (width - len(w)) for w in words]
    return torch.tensor(rows, dtype=torch.long).reshape(len(words), width)


def read_vectors(path: str | Path, vocab: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pretrained vectors for `vocab` from a word2vec / GloVe text file (`.txt`, or `.gz`): lines
    `word v_1 ... v_D`, an optional `count D` header first. Returns the (V, D) rows and a (V,)
    mask of the words found: a word is looked up as it is, then lowercased; the rows of words
    not found are zero. Raises ValueError on a line that is not a word and D numbers."""
    exact: dict[str, list[int]] = {}
    lowered: dict[str, list[int]] = {}
    for i, token in enumerate(vocab):
        if i not in (PAD_ID, UNK_ID):
            exact.setdefault(token, []).append(i)
            if token.lower() != token:
                lowered.setdefault(token.lower(), []).append(i)
    rows: dict[int, list[float]] = {}
    as_is: set[int] = set()  # rows found as the word is, which a lowercased line never replaces
    dim = None
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if number == 1 and word.isdigit() and rest.strip().isdigit():
                continue  # word2vec's header
            if word not in exact and word not in lowered:
                continue
            try:
                values = [float(v) for v in rest.split()]
            except ValueError:
                raise ValueError(f"{path}, line {number}: not a word and numbers") from None
            dim = dim or len(values)
            if len(values) != dim or not dim:
                raise ValueError(f"{path}, line {number}: {len(values)} numbers, not {dim}")
            for i in exact.get(word, []):
                rows[i] = values
                as_is.add(i)
            for i in lowered.get(word, []):
                if i not in as_is:
                    rows[i] = values
    if dim is None:
        raise ValueError(f"{path}: none of the {len(vocab) - 2} words is in it")
    vectors = torch.zeros(len(vocab), dim)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for i, values in rows.items():
        vectors[i] = torch.tensor(values)
        found[i] = True
    return vectors, found


def pad_ids(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences' (T_i,) ids in one (B, max T_i) tensor padded with 0, and the (B, T) mask of the
    real tokens."""
    lengths = torch.tensor([len(r) for r in rows])
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    return pad_sequence(rows, batch_first=True), mask


def pad_chars(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Sentences' (T_i, L_i) character ids in one (B, length, max L_i) tensor, padded with 0."""
    width = max((r.shape[1] for r in rows), default=0)
    out = torch.zeros(len(rows), length, width, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : r.shape[0], : r.shape[1]] = r
    return out
