"""Encoders that turn token ids into per-token features, and the softmax head.

`CharCNN` is the author's segmentation encoder (kexue.fm/archives/5542 and his CNN+CRF word
segmenter): embedding 128 -> 3 x Conv1D(128, kernel 3, ReLU, same padding), dropout between.
`BiLSTM` is the usual recurrent alternative. Both map (B, T) ids to (B, T, out_dim) features;
padding id 0 embeds to zeros. With `extra_dim` > 0 they read `extra` (B, T, extra_dim) features
concatenated to each token's embedding (`src.models.components.word_features`).

`SoftmaxHead` gives independent per-token softmax classification the same interface as `CRF`
(`nll`, `decode`, `marginals`), so a tagger can swap one for the other for comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.models.components.crf import Reduction, reduce_nll
from src.utils.bounds import NonNegativeInt, PositiveInt, Probability


def with_extra(embedded: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    return embedded if extra is None else torch.cat([embedded, extra], -1)


class CharCNN(nn.Module):
    def __init__(
        self,
        vocab_size: PositiveInt,
        embed_dim: PositiveInt = 128,
        channels: PositiveInt = 128,
        kernel_size: PositiveInt = 3,
        layers: PositiveInt = 3,
        dropout: Probability = 0.1,
        extra_dim: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Conv1d(
                embed_dim + extra_dim if i == 0 else channels, channels, kernel_size, padding="same"
            )
            for i in range(layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = channels

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.dropout(with_extra(self.embedding(tokens), extra)).transpose(1, 2)  # (B, C, T)
        keep = mask[:, None, :]
        for conv in self.convs:
            x = self.dropout(F.relu(conv(x)) * keep)  # padding stays zero for the next layer
        return x.transpose(1, 2)


class BiLSTM(nn.Module):
    def __init__(
        self,
        vocab_size: PositiveInt,
        embed_dim: PositiveInt = 128,
        hidden: PositiveInt = 128,
        layers: PositiveInt = 1,
        dropout: Probability = 0.1,
        extra_dim: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embed_dim + extra_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.dropout(with_extra(self.embedding(tokens), extra))
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return self.dropout(out)


class SoftmaxHead(nn.Module):
    """Independent tags: P(y | x) = prod_t softmax(h_t)(y_t); decoding is a per-token argmax."""

    def __init__(self, num_tags: PositiveInt) -> None:
        super().__init__()
        self.num_tags = num_tags

    def nll(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """-log P(tags | x) per sequence, reduced like `CRF.nll`."""
        per_token = F.cross_entropy(
            emissions.float().transpose(1, 2), tags.masked_fill(~mask, 0), reduction="none"
        )
        return reduce_nll(torch.where(mask, per_token, 0.0).sum(1), mask, reduction)

    @torch.no_grad()
    def decode(
        self, emissions: torch.Tensor, mask: torch.Tensor, allowed: object = None
    ) -> torch.Tensor:
        """Per-token argmax, (B, T) with -1 at padding; `allowed` is ignored (no transitions)."""
        return emissions.argmax(-1).masked_fill(~mask, -1)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask[..., None], emissions.float().softmax(-1), 0.0)
