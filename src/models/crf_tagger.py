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

The maths (encoder, emissions, head, decoding, raw text to tags) is
`src.models.components.sequence_tagger.SequenceTagger`, held as `tagger`; this module trains it.
The vocabulary, tag names, scheme and characters come from the data module (`model_kwargs`) and
are stored in the checkpoint, so a checkpoint alone can tag raw text (`scripts/tag.py`, which
builds the `SequenceTagger` without Lightning).
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

from src.metrics.spans import SpanF1
from src.models.base import BaseModule, OptimizerFactory, SchedulerFactory
from src.models.components.sequence_tagger import PARTS, SequenceTagger
from src.utils.bounds import PositiveFloat
from src.utils.errors import UserError
from src.utils.vocabulary import read_vectors

DATA_KWARGS = ["vocab", "tags", "scheme", "chars"]
log = logging.getLogger(__name__)


def _earlier_layout(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """A checkpoint written before the maths moved into `tagger` names its parts at the top
    (`encoder.embedding.weight`): they load as `tagger.encoder.embedding.weight`."""
    for name in [n for n in state_dict if n.startswith(prefix)]:
        if name[len(prefix) :].split(".", 1)[0] in PARTS:
            state_dict[f"{prefix}tagger.{name[len(prefix) :]}"] = state_dict.pop(name)


class CRFTagger(BaseModule):
    loss_task = "tagging"
    monitor = "val/f1"
    monitor_mode = "max"
    compiled = ("tagger.encoder",)

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
        self.save_hparams(ignore=DATA_KWARGS)
        self.tagger = SequenceTagger(
            encoder,
            vocab,
            tags,
            scheme,
            chars,
            head,
            start_end,
            crf_lr_multiplier,
            constrained,
            word_features,
            char_bigrams,
        )
        frozen = torch.zeros(len(vocab), dtype=torch.bool)
        self.register_buffer("frozen", frozen, persistent=False)  # set by `setup`
        self.register_load_state_dict_pre_hook(_earlier_layout)
        self.metrics = nn.ModuleDict(
            {stage: SpanF1(self.tags, scheme) for stage in ("val", "test")}
        )

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, chars: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Emission scores h_t(k), (B, T, K); `chars` (B, T, L): each word's character ids."""
        return self.tagger(tokens, mask, chars)

    def setup(self, stage: str) -> None:
        """Training starts from the `pretrained` vectors (a resumed run then loads its own)."""
        path = self.hparams.get("pretrained")
        if stage != "fit" or not path:
            return
        embedding = getattr(self.tagger.encoder, "embedding", None)
        if not isinstance(embedding, nn.Embedding):
            raise UserError("model.pretrained needs an encoder with a token `embedding`.")
        if not Path(path).is_file():
            raise UserError(f"model.pretrained={path} is not a file; pass a word2vec/GloVe file.")
        try:
            vectors, found = read_vectors(path, self.tagger.vocab)
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
            self._fixed_rows = self.tagger.encoder.embedding.weight[self.frozen].detach().clone()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """`freeze_pretrained`: the rows found in the file are put back after each step."""
        if self.frozen.any():
            with torch.no_grad():
                self.tagger.encoder.embedding.weight[self.frozen] = self._fixed_rows

    def param_groups(self) -> list[dict[str, Any]]:
        crf = list(self.tagger.head.parameters())
        rest = [p for name, p in self.named_parameters() if not name.startswith("tagger.head.")]
        if not crf:
            return [{"params": rest}]
        return [{"params": rest}, {"params": crf, "lr_scale": self.tagger.head.lr_multiplier}]

    def decode(
        self, tokens: torch.Tensor, mask: torch.Tensor, chars: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.tagger.decode(tokens, mask, chars)

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
            loss = self.loss(self.tagger.head, emissions[kept], tags[kept], mask[kept])
            self.log_terms(stage, {"loss": loss}, len(tokens[kept]))
        if stage != "train":
            predicted = self.tagger.head.decode(emissions, mask, self.tagger.allowed)
            self.metrics[stage].update(predicted, tags, mask)
        return loss

    def on_validation_start(self) -> None:
        """Span metrics over the model's tags and the evaluation data's unseen ones: a data module
        with `unseen_tags` gives their ids after the model's (their spans count in recall)."""
        unseen = list(getattr(self.trainer.datamodule, "unseen_tags", None) or [])
        names = self.tags + unseen
        for stage in ("val", "test"):
            if self.metrics[stage].tags != names:
                self.metrics[stage] = SpanF1(names, self.tagger.scheme).to(self.device)

    on_test_start = on_validation_start

    @property
    def tags(self) -> list[str]:
        return self.tagger.tags

    @property
    def word_level(self) -> bool:
        return self.tagger.word_level

    def tag_sentences(self, sentences: list[list[str]]) -> list[list[str]]:
        """Tag names for each token of each (non-empty) sentence."""
        return self.tagger.tag_sentences(sentences)

    def format(self, tokens: list[str], tags: list[str]) -> str:
        return self.tagger.format(tokens, tags)

    def transition_scores(self) -> torch.Tensor | None:
        return self.tagger.transition_scores()

    def _log_metrics(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        if "f1" not in values:  # no spans (POS): every token is its own span, F1 = accuracy
            values["f1"] = values["token_acc"]
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()})
        self.metrics[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
