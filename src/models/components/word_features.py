"""What a tagger reads of a token besides its id: the word's characters and casing, and, for
character-level text, the neighbouring character bigrams.

`WordFeatures` is for tokens that are words (English POS, CoNLL NER, Chinese POS):
- a character CNN per word (Ma & Hovy 2016, "End-to-end Sequence Labeling via Bi-directional
  LSTM-CNNs-CRF"): the characters embedded, one convolution and a max over the word,
      c_w = max_j relu(W [e(ch_{j-1}); e(ch_j); e(ch_{j+1})] + b);
  or (`char_encoder=lstm`) a character BiLSTM (Lample et al. 2016, "Neural Architectures for Named
  Entity Recognition"): c_w = [forward state after the last character; backward state after the
  first], each of `char_channels / 2` units;
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
from torch.nn.utils.rnn import pack_padded_sequence

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
        char_encoder: Literal["cnn", "lstm"] | None = "cnn",
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
        if char_encoder not in ("cnn", "lstm", None):
            raise ValueError(f"char_encoder must be cnn, lstm or null, got {char_encoder!r}")
        if char_encoder == "lstm" and char_channels % 2:
            raise ValueError(
                f"char_channels must be even for lstm (two directions), got {char_channels}"
            )
        self.word_dropout = word_dropout
        self.char_embedding = self.conv = self.lstm = None
        if char_encoder is not None:
            self.char_embedding = nn.Embedding(len(chars), char_dim, padding_idx=PAD_ID)
        if char_encoder == "cnn":
            self.conv = nn.Conv1d(char_dim, char_channels, char_kernel, padding="same")
        if char_encoder == "lstm":
            self.lstm = nn.LSTM(char_dim, char_channels // 2, batch_first=True, bidirectional=True)
        self.casing = nn.Embedding(CASING_CLASSES, casing_dim) if casing_dim else None
        for name, test in (("upper", str.isupper), ("lower", str.islower), ("digit", str.isdigit)):
            flags = torch.tensor([len(c) == 1 and test(c) for c in chars], dtype=torch.bool)
            self.register_buffer(f"is_{name}", flags, persistent=False)
        self.dropout = nn.Dropout(dropout)  # on the character embeddings, as Ma & Hovy
        self.out_dim_chars = char_channels if char_encoder else 0
        self.out_dim = self.out_dim_chars + casing_dim

    def _cnn(self, words: torch.Tensor) -> torch.Tensor:
        """(N, char_channels) for the characters (N, L) of N words: the max over the word."""
        x = self.dropout(self.char_embedding(words)).transpose(1, 2)
        h = F.relu(self.conv(x)).masked_fill(words[:, None, :] == PAD_ID, 0.0)
        return h.amax(-1)  # relu >= 0: padding never wins

    def _bilstm(self, words: torch.Tensor) -> torch.Tensor:
        """(N, char_channels) for the characters (N, L) of N words: the last states of both
        directions, over each word's own characters (a padding word, of none, gives zeros)."""
        lengths = (words != PAD_ID).sum(1)
        out = torch.zeros(len(words), self.out_dim_chars, device=words.device)
        real = lengths > 0
        if real.any():
            x = self.dropout(self.char_embedding(words[real]))
            packed = pack_padded_sequence(x, lengths[real].cpu(), True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)  # h: (2, n, hidden), forward then backward
            out[real] = torch.cat([h[0], h[1]], -1).to(out.dtype)
        return out

    def drop_words(self, tokens: torch.Tensor) -> torch.Tensor:
        """Training: each real word id becomes `<unk>` with probability `word_dropout`."""
        if not self.training or self.word_dropout == 0:
            return tokens
        drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
        return tokens.masked_fill(drop & (tokens != PAD_ID), UNK_ID)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """(B, T, out_dim) features from the characters (B, T, L) of each word."""
        parts = []
        if self.char_embedding is not None:
            b, t, length = chars.shape
            # each distinct word of the batch once (a word's features are its own)
            words, which = torch.unique(chars.reshape(b * t, length), dim=0, return_inverse=True)
            encode = self._cnn if self.conv is not None else self._bilstm
            parts.append(encode(words)[which].reshape(b, t, -1))
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
        ids = F.pad(tokens.masked_fill(~mask, PAD_ID), (1, 1))
        # bigram t of the padded row is (c_{t-1}, c_t): the left one of character t and the right
        # one of character t - 1, so one lookup serves both (and one gradient of the table)
        bigrams = self.embedding(self.bucket(ids[:, :-1], ids[:, 1:]))  # (B, T + 1, dim)
        return torch.cat([bigrams[:, :-1], bigrams[:, 1:]], -1) * mask[..., None]
