"""Sequence tagger: token encoder -> linear emissions h_t -> CRF (or softmax) head.

The author's Chinese word segmenter (kexue.fm/archives/5542): character embedding 128 ->
3 x Conv1D(128, kernel 3) -> Dense(4) -> CRF over the tags B/M/E/S, trained on

    nll = log Z(x) - score(gold),   score(y) = sum_t h_t(y_t) + sum_t g(y_t, y_{t+1})

with the CRF's learning rate about 100x the encoder's. Decoding is Viterbi, constrained by
default to the paths the tag scheme allows (no B->B, M->S, ...; first tag in {B, S}, last in
{E, S} for BMES). The same module tags named entities (BIO/BIOES) and parts of speech.

Tokens that are words (the data module then gives `chars`, its character vocabulary, and each
batch the characters of every word) also feed the encoder `word_features`: a character CNN per
word, a casing class and word dropout (`src.models.components.word_features`). Characters can
add hashed `char_bigrams`. `pretrained` initialises the token embedding from a word2vec/GloVe
text file when training starts; `freeze_pretrained` keeps the rows found in it fixed (the others,
`<unk>` among them, train).

The vocabulary, tag names, scheme and characters come from the data module (`model_kwargs`) and
are stored in the checkpoint, so a checkpoint alone can tag raw text (`scripts/tag.py`).
TensorBoard's examples and transition heatmap come from the tagging_examples callback, through
`tag_sentences`, `format` and `transition_scores`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from src.metrics.spans import SpanF1, format_tagged
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.crf import CRF, allowed_transitions
from src.models.components.tagging import SoftmaxHead
from src.utils.bounds import PositiveFloat
from src.utils.errors import UserError
from src.utils.vocabulary import encode_chars, encode_tokens, pad_chars, pad_ids, read_vectors

DATA_KWARGS = ["vocab", "tags", "scheme", "chars"]
log = logging.getLogger(__name__)


class CRFTagger(BaseModule):
    loss_task = "tagging"
    monitor = "val/f1"
    monitor_mode = "max"
    compiled = ("encoder",)

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        head: Literal["crf", "softmax"] = "crf",
        start_end: bool = True,
        crf_lr_multiplier: PositiveFloat = 100.0,
        constrained: bool = True,
        word_features: Callable[..., nn.Module] | None = None,
        char_bigrams: Callable[..., nn.Module] | None = None,
        pretrained: str | None = None,
        freeze_pretrained: bool = False,
        vocab: list[str] | None = None,
        tags: list[str] | None = None,
        scheme: str | None = None,
        chars: list[str] | None = None,
        eval_seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(loss, optimizer, scheduler, eval_seed, compile)
        if not vocab or not tags:
            raise UserError(
                "the tagger takes its vocabulary and tags from a tagging data module: use "
                "data=people_daily (data.task=cws|ner|pos) or data=conll."
            )
        if head not in ("crf", "softmax"):
            raise UserError(f"model.head={head!r}: use crf or softmax.")
        self.save_hparams(ignore=DATA_KWARGS)
        self.vocab, self.tags, self.scheme = list(vocab), list(tags), scheme
        self.token_index = {token: i for i, token in enumerate(self.vocab)}
        self.chars = list(chars) if chars else None
        self.char_index = {c: i for i, c in enumerate(self.chars or [])}
        self.word_features = word_features(chars=self.chars) if chars and word_features else None
        self.char_bigrams = char_bigrams() if not chars and char_bigrams else None
        extra = sum(f.out_dim for f in (self.word_features, self.char_bigrams) if f is not None)
        widths = {"extra_dim": extra} if extra else {}
        self.encoder = encoder(vocab_size=len(self.vocab), **widths)
        frozen = torch.zeros(len(self.vocab), dtype=torch.bool)
        self.register_buffer("frozen", frozen, persistent=False)  # set by `setup`
        self.emit = nn.Linear(self.encoder.out_dim, len(self.tags))
        k = len(self.tags)
        self.head = CRF(k, start_end, crf_lr_multiplier) if head == "crf" else SoftmaxHead(k)
        self.allowed = (
            allowed_transitions(self.tags, scheme)
            if constrained and scheme and head == "crf"
            else None
        )
        self.metrics = nn.ModuleDict(
            {stage: SpanF1(self.tags, scheme) for stage in ("val", "test")}
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

    def setup(self, stage: str) -> None:
        """Training starts from the `pretrained` vectors (a resumed run then loads its own)."""
        path = self.hparams.get("pretrained")
        if stage != "fit" or not path:
            return
        embedding = getattr(self.encoder, "embedding", None)
        if not isinstance(embedding, nn.Embedding):
            raise UserError("model.pretrained needs an encoder with a token `embedding`.")
        if not Path(path).is_file():
            raise UserError(f"model.pretrained={path} is not a file; pass a word2vec/GloVe file.")
        try:
            vectors, found = read_vectors(path, self.vocab)
        except ValueError as err:
            raise UserError(f"model.pretrained: {err}; pass a word2vec/GloVe text file.") from None
        if vectors.shape[1] != embedding.embedding_dim:
            raise UserError(
                f"model.pretrained={path} has {vectors.shape[1]}-d vectors; set "
                f"model.encoder.embed_dim={vectors.shape[1]}."
            )
        with torch.no_grad():
            embedding.weight[found] = vectors[found].to(embedding.weight)
        self.frozen.copy_(found & bool(self.hparams.get("freeze_pretrained")))
        log.info("model.pretrained: %d of %d tokens found in %s", found.sum(), len(found), path)

    def on_train_start(self) -> None:
        if self.frozen.any():
            self._fixed_rows = self.encoder.embedding.weight[self.frozen].detach().clone()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """`freeze_pretrained`: the rows found in the file are put back after each step."""
        if self.frozen.any():
            with torch.no_grad():
                self.encoder.embedding.weight[self.frozen] = self._fixed_rows

    def param_groups(self) -> list[dict[str, Any]]:
        crf = list(self.head.parameters())
        rest = [p for name, p in self.named_parameters() if not name.startswith("head.")]
        if not crf:
            return [{"params": rest}]
        return [{"params": rest}, {"params": crf, "lr_scale": self.head.lr_multiplier}]

    def decode(
        self, tokens: torch.Tensor, mask: torch.Tensor, chars: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head.decode(self(tokens, mask, chars), mask, self.allowed)

    def shared_step(
        self, batch: tuple[torch.Tensor, ...], batch_idx: int, stage: str
    ) -> torch.Tensor | None:
        """The loss of the batch; in evaluation also the predictions against the gold tags. A gold
        tag training never had (id >= len(tags), see `on_validation_start`) is an error, and the
        loss leaves its sentence out: the model has no score for such a path."""
        tokens, tags, mask, *chars = batch
        emissions = self(tokens, mask, *chars)
        scorable = ((tags < len(self.tags)) | ~mask).all(1)
        kept = slice(None) if stage == "train" or bool(scorable.all()) else scorable
        loss = None
        if kept is not scorable or bool(scorable.any()):  # a whole batch: no sync in training
            loss = self.loss(self.head, emissions[kept], tags[kept], mask[kept])
            self.log_terms(stage, {"loss": loss}, len(tokens[kept]))
        if stage != "train":
            predicted = self.head.decode(emissions, mask, self.allowed)
            self.metrics[stage].update(predicted, tags, mask)
        return loss

    def on_validation_start(self) -> None:
        """Span metrics over the model's tags and the evaluation data's unseen ones: a data module
        with `unseen_tags` gives their ids after the model's (their spans count in recall)."""
        unseen = list(getattr(self.trainer.datamodule, "unseen_tags", None) or [])
        names = self.tags + unseen
        for stage in ("val", "test"):
            if self.metrics[stage].tags != names:
                self.metrics[stage] = SpanF1(names, self.scheme).to(self.device)

    on_test_start = on_validation_start

    @torch.no_grad()
    def tag_sentences(self, sentences: list[list[str]]) -> list[list[str]]:
        """Tag names for each token of each (non-empty) sentence."""
        if not sentences:
            return []
        tokens, mask = pad_ids([encode_tokens(s, self.token_index) for s in sentences])
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        chars = None
        if self.chars:
            rows = [encode_chars(sentence, self.char_index) for sentence in sentences]
            chars = pad_chars(rows, tokens.shape[1]).to(self.device)
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

    def _log_metrics(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        if "f1" not in values:  # no spans (POS): every token is its own span, F1 = accuracy
            values["f1"] = values["token_acc"]
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()})
        self.metrics[stage].reset()

    def transition_scores(self) -> torch.Tensor | None:
        """The CRF's transition scores g(i, j) (K, K); None for a softmax head."""
        return self.head.transitions if isinstance(self.head, CRF) else None

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
