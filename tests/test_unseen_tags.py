"""Gold tags of a researcher's dev/test files that training never had are scored, not refused:
they count as errors in token accuracy, their spans in recall (as seqeval counts them), their
sentences leave the loss, one warning line names them, and no prediction is ever one of them."""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from src.data.corpora import write_conll
from src.data.tagging import ConllDataModule
from src.losses.tagging import TagNLL
from src.metrics.spans import SpanF1
from src.models.components.tagging import CharCNN
from src.models.crf_tagger import CRFTagger
from src.train import train
from tests.conftest import compose_config

SEEN = ["O", "B-PER", "I-PER"]
UNSEEN = ["B-MISC", "I-MISC"]


def test_the_data_names_unseen_tags_once_and_gives_them_ids_past_the_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train_file, test_file = tmp_path / "train.conll", tmp_path / "test.conll"
    write_conll([(["Ann", "runs"], ["B-PER", "O"]), (["Bo", "Li"], ["B-PER", "I-PER"])], train_file)
    write_conll(
        [(["Ann", "Euro", "Cup"], ["B-PER", "B-MISC", "I-MISC"]), (["x"], ["B-MISC"])], test_file
    )
    with caplog.at_level(logging.WARNING, logger="src.data.tagging"):
        data = ConllDataModule(str(train_file), str(train_file), str(test_file))
        assert data.tags == SEEN and data.unseen_tags == UNSEEN
    assert data.model_kwargs()["tags"] == SEEN  # the model predicts the training tags only
    assert data.datasets["test"][0][1].tolist() == [1, 3, 4]
    assert data.datasets["test"][1][1].tolist() == [3]
    (record,) = caplog.records
    assert record.getMessage() == (
        f"{test_file} (data.test_file) has tags the training data never has: 'B-MISC' (2), "
        "'I-MISC' (1). The model cannot predict them: they count as errors in token accuracy, "
        "their spans in recall, and their sentences are left out of the loss."
    )


def _random_pairs(n: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Gold sequences over seen and unseen tags, predictions over the seen ones only."""
    rng = random.Random(seed)
    gold, pred = [], []
    for _ in range(n):
        length = rng.randint(1, 10)
        gold.append(rng.choices(SEEN + UNSEEN, k=length))
        pred.append(rng.choices(SEEN, k=length))
    return gold, pred


def test_unseen_tag_spans_count_in_recall_as_seqeval_counts_them() -> None:
    gold, pred = _random_pairs(400, seed=3)
    names = SEEN + UNSEEN
    metric = SpanF1(names, "BIO")
    for g, p in zip(gold, pred, strict=True):
        ids = [torch.tensor([[names.index(t) for t in seq]]) for seq in (p, g)]
        metric.update(ids[0], ids[1], torch.ones_like(ids[0], dtype=torch.bool))
    values = metric.compute()
    strict = {"mode": "strict", "scheme": IOB2}
    assert float(values["precision"]) == pytest.approx(precision_score(gold, pred, **strict))
    assert float(values["recall"]) == pytest.approx(recall_score(gold, pred, **strict))
    assert float(values["f1"]) == pytest.approx(f1_score(gold, pred, **strict))
    assert float(values["f1_MISC"]) == 0.0
    tokens = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    assert float(values["token_acc"]) == pytest.approx(right / tokens)


def _tagger() -> CRFTagger:
    return CRFTagger(
        encoder=functools.partial(CharCNN, embed_dim=4, channels=4, layers=1),
        loss=TagNLL(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        vocab=["<pad>", "<unk>", "a", "b"],
        tags=SEEN,
        scheme="BIO",
    )


def test_the_loss_leaves_out_the_sentences_it_cannot_score() -> None:
    model = _tagger().eval()  # no dropout: the same emissions for both calls
    tokens = torch.tensor([[2, 3, 2], [3, 2, 0], [2, 2, 3]])
    mask = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    tags = torch.tensor([[1, 2, 0], [0, 3, 0], [0, 0, 1]])  # sentence 1 has an unseen tag (3)
    logged = {}
    model.log_terms = lambda stage, terms, n: logged.update(terms=terms, n=n)
    model.metrics["val"].update = lambda *a: None
    loss = model.shared_step((tokens, tags, mask), 0, "val")
    kept = torch.tensor([True, False, True])
    expected = model.loss(
        model.tagger.head, model(tokens[kept], mask[kept]), tags[kept], mask[kept]
    )
    torch.testing.assert_close(loss, expected)
    assert logged["n"] == 2
    model.shared_step((tokens[1:2], tags[1:2], mask[1:2]), 0, "val")  # nothing to score
    assert logged["n"] == 2  # no loss logged for it


def test_a_run_on_files_with_unseen_tags_trains_and_scores_them(tmp_path: Path) -> None:
    rng = random.Random(0)
    names = ["Ann", "Bo", "Cy"]

    def sentences(n: int, misc: bool) -> list[tuple[list[str], list[str]]]:
        out = []
        for _ in range(n):
            words = ["said", rng.choice(names), "to", rng.choice(names)]
            tags = ["O", "B-PER", "O", "B-PER"]
            if misc:
                words, tags = [*words, "Euro"], [*tags, "B-MISC"]
            out.append((words, tags))
        return out

    write_conll(sentences(60, False), tmp_path / "train.conll")
    write_conll(sentences(20, True), tmp_path / "test.conll")
    files = [f"data.{k}_file={tmp_path}/train.conll" for k in ("train", "val")]
    cfg = compose_config(
        [
            "model=crf_tagger",
            "data=conll",
            *files,
            f"data.test_file={tmp_path}/test.conll",
            "data.batch_size=8",
            "trainer.max_epochs=6",
            "logger=csv",
            "callbacks=none",
            "model.optimizer.lr=0.02",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    # the PER spans are learnt (val/f1 on the training file), every MISC token is an error, and
    # the MISC spans count in recall: 40 PER spans found of 60 gold at best
    assert metrics["val/f1"] > 0.9 and metrics["test/f1_MISC"] == 0.0
    assert metrics["test/token_acc"] <= 0.8 + 1e-6 and metrics["test/recall"] <= 2 / 3 + 1e-6
    assert "test/loss" not in metrics  # every test sentence has an unseen tag
