"""What a tagger reads of a token besides its id: the word's characters and casing, and, for
character-level text, the neighbouring character bigrams.

`WordFeatures` is for tokens that are words (English POS, CoNLL NER, Chinese POS):
- a character CNN per word (Ma & Hovy 2016, "End-to-end Sequence Labeling via Bi-directional
  LSTM-CNNs-CRF"): the characters embedded, one convolution and a max over the word,
      c_w = max_j relu(W [e(ch_{j-1}); e(ch_j); e(ch_{j+1})] + b);
- a casing class (numeric, has a digit, no letter, lower, UPPER, Title, mIxed) embedded, read
  from the characters;
- word dropout (Lample et al. 2016): in training a word id becomes `<unk>` with probability p, so
  the unknown word's embedding learns from words it has seen; the characters stay.

`CharBigrams` is for tokens that are characters (Chinese segmentation and NER), the standard
feature of published segmenters: the embeddings of the bigrams (c_{t-1} c_t) and (c_t c_{t+1}),
hashed into `buckets` rows as fastText hashes n-grams, h(a, b) = (a * 1000003 + b) mod buckets.
The table starts at zero, so a bigram training never saw adds nothing.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from src.utils.bounds import NonNegativeInt, PositiveInt, Probability
from src.utils.vocabulary import PAD_ID, UNK_ID

CASING_CLASSES = 8  # padding, numeric, digit, no letter, lower, UPPER, Title, mIxed


def casing_classes(
    chars: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor, digit: torch.Tensor
) -> torch.Tensor:
    """The casing class of each word from its character ids (..., L) and per-character flags
    (indexed by character id): 0 padding, 1 numeric, 2 has a digit, 3 no letter, 4 lower,
    5 UPPER, 6 Title, 7 mIxed."""
    real = chars != PAD_ID
    n = real.sum(-1)
    n_up, n_low, n_digit = ((flag[chars] & real).sum(-1) for flag in (upper, lower, digit))
    title = upper[chars[..., 0]] & (n_up == 1) & (n_low > 0)
    out = torch.where(title, 6, 7)
    out = torch.where(n_low == 0, 5, out)
    out = torch.where(n_up == 0, 4, out)
    out = torch.where((n_up == 0) & (n_low == 0), 3, out)
    out = torch.where(n_digit > 0, 2, out)
    out = torch.where(n_digit == n, 1, out)
    return torch.where(n == 0, 0, out)


class WordFeatures(nn.Module):
    def __init__(
        self,
        chars: list[str],
        char_encoder: Literal["cnn"] | None = "cnn",
        char_dim: PositiveInt = 30,
        char_channels: PositiveInt = 50,
        char_kernel: PositiveInt = 3,
        casing_dim: NonNegativeInt = 8,
        word_dropout: Probability = 0.05,
        dropout: Probability = 0.5,
    ) -> None:
        super().__init__()
        if char_kernel % 2 == 0:
            raise ValueError(f"char_kernel must be odd (same padding), got {char_kernel}")
        self.word_dropout = word_dropout
        self.char_embedding = self.conv = None
        if char_encoder == "cnn":
            self.char_embedding = nn.Embedding(len(chars), char_dim, padding_idx=PAD_ID)
            self.conv = nn.Conv1d(char_dim, char_channels, char_kernel, padding="same")
        self.casing = nn.Embedding(CASING_CLASSES, casing_dim) if casing_dim else None
        for name, test in (("upper", str.isupper), ("lower", str.islower), ("digit", str.isdigit)):
            flags = torch.tensor([len(c) == 1 and test(c) for c in chars], dtype=torch.bool)
            self.register_buffer(f"is_{name}", flags, persistent=False)
        self.dropout = nn.Dropout(dropout)  # on the character embeddings, as Ma & Hovy
        self.out_dim = (char_channels if self.conv is not None else 0) + casing_dim

    def drop_words(self, tokens: torch.Tensor) -> torch.Tensor:
        """Training: each real word id becomes `<unk>` with probability `word_dropout`."""
        if not self.training or self.word_dropout == 0:
            return tokens
        drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
        return tokens.masked_fill(drop & (tokens != PAD_ID), UNK_ID)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """(B, T, out_dim) features from the characters (B, T, L) of each word."""
        parts = []
        if self.conv is not None:
            b, t, length = chars.shape
            # each distinct word of the batch once (a word's features are its own)
            words, which = torch.unique(chars.reshape(b * t, length), dim=0, return_inverse=True)
            x = self.dropout(self.char_embedding(words)).transpose(1, 2)
            h = F.relu(self.conv(x)).masked_fill(words[:, None, :] == PAD_ID, 0.0)
            parts.append(h.amax(-1)[which].reshape(b, t, -1))  # relu >= 0: padding never wins
        if self.casing is not None:
            parts.append(
                self.casing(casing_classes(chars, self.is_upper, self.is_lower, self.is_digit))
            )
        return torch.cat(parts, -1)


class CharBigrams(nn.Module):
    def __init__(self, buckets: PositiveInt = 262144, dim: PositiveInt = 64) -> None:
        super().__init__()
        self.buckets = buckets
        self.embedding = nn.Embedding(buckets, dim)
        nn.init.zeros_(self.embedding.weight)
        self.out_dim = 2 * dim

    def bucket(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return (left * 1000003 + right) % self.buckets

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 2 dim): the left and right bigram of each character; padding is id 0."""
        ids = tokens.masked_fill(~mask, PAD_ID)
        before = F.pad(ids, (1, 0))[:, :-1]
        after = F.pad(ids, (0, 1))[:, 1:]
        left = self.embedding(self.bucket(before, ids))
        right = self.embedding(self.bucket(ids, after))
        return torch.cat([left, right], -1) * mask[..., None]
