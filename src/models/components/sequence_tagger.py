"""The sequence tagger's maths, without its training (kexue.fm/archives/5542):

    h_t = W enc(x)_t + b,    y* = argmax_y  sum_t h_t(y_t) + sum_t g(y_t, y_{t+1})

token ids (and, for words, their characters) -> an encoder -> emission scores h (B, T, K) -> a
linear-chain CRF, or an independent softmax, whose Viterbi decoding is constrained by default to
the paths the tag scheme allows. `tag_sentences` goes from raw tokens to tag names.

`src.models.crf_tagger.CRFTagger` trains one of these (its weights are under `tagger.`).
`scripts/tag.py` builds one straight from a checkpoint with torch alone: tagging needs the maths,
not Lightning, whose import is most of the start-up of a short job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from src.models.components.crf import CRF, allowed_transitions
from src.models.components.tagging import SoftmaxHead
from src.utils.bounds import PositiveFloat
from src.utils.errors import UserError
from src.utils.tag_schemes import format_tagged
from src.utils.vocabulary import encode_chars, encode_tokens, pad_chars, pad_ids

PARTS = ("word_features", "char_bigrams", "encoder", "emit", "head")


class SequenceTagger(nn.Module):
    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        vocab: list[str],
        tags: list[str],
        scheme: str | None = None,
        chars: list[str] | None = None,
        head: Literal["crf", "softmax"] = "crf",
        start_end: bool = True,
        crf_lr_multiplier: PositiveFloat = 100.0,
        constrained: bool = True,
        word_features: Callable[..., nn.Module] | None = None,
        char_bigrams: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if head not in ("crf", "softmax"):
            raise UserError(f"model.head={head!r}: use crf or softmax.")
        self.vocab, self.tags, self.scheme = list(vocab), list(tags), scheme
        self.token_index = {token: i for i, token in enumerate(self.vocab)}
        self.chars = list(chars) if chars else None
        self.char_index = {c: i for i, c in enumerate(self.chars or [])}
        self.word_features = word_features(chars=self.chars) if chars and word_features else None
        self.char_bigrams = char_bigrams() if not chars and char_bigrams else None
        extra = sum(f.out_dim for f in (self.word_features, self.char_bigrams) if f is not None)
        widths = {"extra_dim": extra} if extra else {}
        self.encoder = encoder(vocab_size=len(self.vocab), **widths)
        self.emit = nn.Linear(self.encoder.out_dim, len(self.tags))
        k = len(self.tags)
        self.head = CRF(k, start_end, crf_lr_multiplier) if head == "crf" else SoftmaxHead(k)
        self.allowed = (
            allowed_transitions(self.tags, scheme)
            if constrained and scheme and head == "crf"
            else None
        )

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, chars: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Emission scores h_t(k), (B, T, K); `chars` (B, T, L): each word's character ids."""
        extra = []
        if self.word_features is not None:
            if chars is None:
                raise ValueError("a tagger of words needs each word's characters (chars)")
            tokens = self.word_features.drop_words(tokens)
            extra.append(self.word_features(chars))
        if self.char_bigrams is not None:
            extra.append(self.char_bigrams(tokens, mask))
        if not extra:
            return self.emit(self.encoder(tokens, mask))
        return self.emit(self.encoder(tokens, mask, torch.cat(extra, -1)))

    def decode(
        self, tokens: torch.Tensor, mask: torch.Tensor, chars: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The best allowed tag path, (B, T) with -1 at padding."""
        return self.head.decode(self(tokens, mask, chars), mask, self.allowed)

    @torch.no_grad()
    def tag_sentences(self, sentences: list[list[str]]) -> list[list[str]]:
        """Tag names for each token of each (non-empty) sentence."""
        if not sentences:
            return []
        device = self.emit.weight.device
        tokens, mask = pad_ids([encode_tokens(s, self.token_index) for s in sentences])
        tokens, mask = tokens.to(device), mask.to(device)
        chars = None
        if self.chars:
            rows = [encode_chars(sentence, self.char_index) for sentence in sentences]
            chars = pad_chars(rows, tokens.shape[1]).to(device)
        paths = self.decode(tokens, mask, chars).tolist()
        return [
            [self.tags[i] for i in path[: len(s)]] for path, s in zip(paths, sentences, strict=True)
        ]

    @property
    def word_level(self) -> bool:
        """Whether its tokens are words rather than characters: the data module, which decides
        that from the training tokens (`is_word_level`), gives a tagger of words their characters
        (`chars`)."""
        return self.chars is not None

    def format(self, tokens: list[str], tags: list[str]) -> str:
        """Readable tagged text: words split by spaces, [entities]TYPE, or word/TAG."""
        return format_tagged(tokens, tags, self.scheme, join=" " if self.word_level else "")

    def transition_scores(self) -> torch.Tensor | None:
        """The CRF's transition scores g(i, j) (K, K); None for a softmax head."""
        return self.head.transitions if isinstance(self.head, CRF) else None


def tagger_weights(state_dict: Mapping[str, Any], prefix: str = "tagger.") -> dict[str, Any]:
    """A `SequenceTagger`'s weights out of a trained model's: those under `prefix`, or, from a
    checkpoint written before the tagger's maths had a module of its own, the parts' own names."""
    return {
        name[len(prefix) :] if name.startswith(prefix) else name: value
        for name, value in state_dict.items()
        if name.startswith(prefix) or name.split(".", 1)[0] in PARTS
    }
