"""Span metrics (src/metrics/spans.py) against seqeval's strict mode, on random (mostly
ill-formed) tag sequences, plus hand examples of the tagged-text rendering."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES, Entities

from src.metrics.spans import SpanF1
from src.utils.errors import UserError
from src.utils.tag_schemes import extract_spans, format_tagged, parse_tag

TYPES = ["LOC", "PER"]
TAGS = {
    "BIO": ["O"] + [f"{p}-{t}" for t in TYPES for p in "BI"],
    "BIOES": ["O"] + [f"{p}-{t}" for t in TYPES for p in "BIES"],
    "BMES": list("BMES"),
    "BMES-typed": [f"{p}-{t}" for t in TYPES for p in "BMES"],
}
SEQEVAL_SCHEME = {"BIO": IOB2, "BIOES": IOBES, "BMES": IOBES, "BMES-typed": IOBES}
BMES_TO_IOBES = {"B": "B", "M": "I", "E": "E", "S": "S"}


def _scheme(name: str) -> str:
    return name.removesuffix("-typed")


def _to_seqeval(tags: list[str], name: str) -> list[str]:
    """BMES tags as IOBES ones (B->B, M->I, E->E, S->S; untyped ones get the type W)."""
    if _scheme(name) != "BMES":
        return tags
    out = []
    for tag in tags:
        prefix, kind = parse_tag(tag)
        out.append(f"{BMES_TO_IOBES[prefix]}-{kind or 'W'}")
    return out


def _random_sequences(name: str, n: int, seed: int, max_len: int = 12) -> list[list[str]]:
    """`n` sequences of uniform draws from the full tag set: many ill-formed fragments."""
    rng = random.Random(seed)
    return [rng.choices(TAGS[name], k=rng.randint(0, max_len)) for _ in range(n)]


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize("name", list(TAGS))
def test_extract_spans_matches_seqeval_strict(name: str) -> None:
    sequences = _random_sequences(name, n=500, seed=len(name))
    entities = Entities([_to_seqeval(seq, name) for seq in sequences], SEQEVAL_SCHEME[name])
    n_spans = 0
    for seq, expected in zip(sequences, entities.entities, strict=True):
        got = extract_spans(seq, _scheme(name))
        n_spans += len(got)
        assert [(kind or "W", s, e) for s, e, kind in got] == [
            (ent.tag, ent.start, ent.end) for ent in expected
        ], seq
    assert n_spans > 200  # the comparison saw plenty of spans, not just empty lists


def test_extract_spans_hand_examples() -> None:
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("O") == ("O", "")
    assert parse_tag("S") == ("S", "")
    bio = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-PER", "B-LOC"]
    assert extract_spans(bio, "BIO") == [(0, 2, "PER"), (4, 5, "LOC"), (6, 7, "LOC")]
    bioes = ["B-PER", "I-PER", "E-PER", "B-LOC", "I-LOC", "S-PER", "B-LOC", "E-PER", "E-LOC"]
    assert extract_spans(bioes, "BIOES") == [(0, 3, "PER"), (5, 6, "PER")]
    assert extract_spans(list("BMESBEMEBM"), "BMES") == [(0, 3, ""), (3, 4, ""), (4, 6, "")]
    with pytest.raises(UserError, match="BIOE"):
        extract_spans(["O"], "BIOE")


# ---------------------------------------------------------------- SpanF1


def _random_batches(
    name: str, n_batches: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(preds, target, mask) batches: random gold ids, preds a noisy copy, -1 at padding."""
    gen = torch.Generator().manual_seed(seed)
    n_tags = len(TAGS[name])
    batches = []
    for _ in range(n_batches):
        b, t = torch.randint(1, 9, (2,), generator=gen).tolist()
        target = torch.randint(0, n_tags, (b, t), generator=gen)
        noise = torch.randint(0, n_tags, (b, t), generator=gen)
        preds = torch.where(torch.rand(b, t, generator=gen) < 0.75, target, noise)
        lengths = torch.randint(0, t + 1, (b,), generator=gen)
        mask = torch.arange(t) < lengths[:, None]
        target = torch.where(mask, target, torch.randint(0, n_tags, (b, t), generator=gen))
        batches.append((torch.where(mask, preds, -1), target, mask))
    return batches


def _as_strings(batches: list, name: str) -> tuple[list[list[str]], list[list[str]]]:
    """The unpadded sentences of the batches as seqeval tag strings (pred, gold)."""
    y_pred, y_true = [], []
    for preds, target, mask in batches:
        for p, g, m in zip(preds.tolist(), target.tolist(), mask.tolist(), strict=True):
            n = sum(m)
            y_pred.append(_to_seqeval([TAGS[name][i] for i in p[:n]], name))
            y_true.append(_to_seqeval([TAGS[name][i] for i in g[:n]], name))
    return y_pred, y_true


def _score(name: str, batches: list) -> dict[str, torch.Tensor]:
    metric = SpanF1(TAGS[name], _scheme(name))
    for batch in batches:
        metric.update(*batch)
    return metric.compute()


@pytest.mark.parametrize("name", list(TAGS))
def test_span_f1_matches_seqeval(name: str) -> None:
    batches = _random_batches(name, n_batches=40, seed=len(name))
    got = _score(name, batches)
    y_pred, y_true = _as_strings(batches, name)
    kwargs = {"mode": "strict", "scheme": SEQEVAL_SCHEME[name], "zero_division": 0}
    assert got["f1"] > 0.1  # enough true positives to make the comparison meaningful
    assert got["precision"].item() == pytest.approx(
        precision_score(y_true, y_pred, **kwargs), abs=1e-6
    )
    assert got["recall"].item() == pytest.approx(recall_score(y_true, y_pred, **kwargs), abs=1e-6)
    assert got["f1"].item() == pytest.approx(f1_score(y_true, y_pred, **kwargs), abs=1e-6)
    report = classification_report(y_true, y_pred, output_dict=True, **kwargs)
    if name == "BMES":
        assert set(got) == {"precision", "recall", "f1", "token_acc"}
    else:
        assert set(got) == {"precision", "recall", "f1", "token_acc", "f1_LOC", "f1_PER"}
        for kind in TYPES:
            expected = report.get(kind, {"f1-score": 0.0})["f1-score"]
            assert got[f"f1_{kind}"].item() == pytest.approx(expected, abs=1e-6)
    pairs = [
        (p, g) for ps, gs in zip(y_pred, y_true, strict=True) for p, g in zip(ps, gs, strict=True)
    ]
    token_acc = sum(p == g for p, g in pairs) / len(pairs)
    assert got["token_acc"].item() == pytest.approx(token_acc, abs=1e-6)


def _one_batch(batches: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All sentences of `batches` in a single batch, padded to the longest one + 3."""
    width = max(batch[0].shape[1] for batch in batches) + 3

    def cat(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
        return torch.cat([F.pad(x, (0, width - x.shape[1]), value=value) for x in tensors])

    preds, target, mask = zip(*batches, strict=True)
    return cat(preds, -1), cat(target, 0), cat([m.long() for m in mask], 0).bool()


@pytest.mark.parametrize("name", ["BIO", "BIOES", "BMES"])
def test_span_f1_independent_of_batching_and_reset(name: str) -> None:
    batches = _random_batches(name, n_batches=12, seed=7)
    several = _score(name, batches)
    one = _score(name, [_one_batch(batches)])
    assert several.keys() == one.keys()
    for key in several:
        assert torch.equal(several[key], one[key]), key

    # two halves merged as DDP's sum-reduction would: the same scores
    first, second = SpanF1(TAGS[name], name), SpanF1(TAGS[name], name)
    for batch in batches[:5]:
        first.update(*batch)
    for batch in batches[5:]:
        second.update(*batch)
    first.merge_state(second)
    for key, value in first.compute().items():
        assert torch.equal(value, several[key]), key

    metric = SpanF1(TAGS[name], name)
    for batch in _random_batches(name, n_batches=5, seed=99):
        metric.update(*batch)
    metric.reset()
    for batch in batches:
        metric.update(*batch)
    for key, value in metric.compute().items():
        assert torch.equal(value, several[key]), key


def test_span_f1_edge_cases() -> None:
    tags = ["O", "B-PER", "I-PER"]
    pos = SpanF1(["NN", "VV", "PN"], None)
    pos.update(torch.tensor([[0, 1, -1]]), torch.tensor([[0, 2, 1]]), torch.tensor([[1, 1, 0]]))
    assert pos.compute() == {"token_acc": torch.tensor(0.5)}

    metric = SpanF1(tags, "BIO")  # no spans anywhere: every score 0, not NaN
    metric.update(
        torch.zeros(2, 3, dtype=torch.long),
        torch.zeros(2, 3, dtype=torch.long),
        torch.ones(2, 3, dtype=torch.bool),
    )
    scores = metric.compute()
    assert {k: v.item() for k, v in scores.items()} == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "f1_PER": 0.0,
        "token_acc": 1.0,
    }
    with pytest.raises(UserError, match="E-PER"):
        SpanF1([*tags, "E-PER"], "BIO")
    with pytest.raises(UserError, match="unknown"):
        SpanF1(tags, "IOB")


# ---------------------------------------------------------------- format_tagged


def test_format_tagged_bmes() -> None:
    chars = list("迈向充满希望的新世纪")
    tags = ["B", "E", "B", "E", "B", "E", "S", "S", "B", "E"]
    assert format_tagged(chars, tags, "BMES") == "迈向 充满 希望 的 新 世纪"
    assert format_tagged(list("迈向充满希望"), list("BEBEBE"), "BMES") == "迈向 充满 希望"
    # ill-formed: B M cut off by S, a lone M, a lone E: each character once, in order
    ill = format_tagged(list("一个新的世纪"), list("BMSMBE"), "BMES")
    assert ill == "一 个 新 的 世纪"
    assert format_tagged(list("北京"), ["B-NR", "E-NR"], "BMES") == "北京/NR"


def test_format_tagged_bio_bioes_and_pos() -> None:
    chars = list("江泽民主席访问北京")
    tags = ["B-PER", "I-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "I-LOC"]
    assert format_tagged(chars, tags, "BIO") == "[江泽民]PER主席访问[北京]LOC"
    words = ["John", "Smith", "lives", "in", "New", "York"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    assert format_tagged(words, tags, "BIO", join=" ") == "[John Smith]PER lives in [New York]LOC"
    ill = ["I-PER", "I-PER", "O", "O", "B-LOC", "I-PER"]
    assert format_tagged(words, ill, "BIO", join=" ") == "John Smith lives in [New]LOC York"
    bioes = ["B-PER", "E-PER", "O", "O", "B-LOC", "I-LOC"]  # New York never closed: no span
    assert format_tagged(words, bioes, "BIOES", join=" ") == "[John Smith]PER lives in New York"
    assert format_tagged(list("我爱北京"), ["O", "O", "S-LOC", "O"], "BIOES") == "我爱[北]LOC京"
    assert format_tagged(list("你好"), ["O", "O"], "BIO") == "你好"
    assert format_tagged(["我", "爱", "北京"], ["PN", "VV", "NR"], None) == "我/PN 爱/VV 北京/NR"
    with pytest.raises(ValueError, match="2 tokens but 3 tags"):
        format_tagged(["a", "b"], ["O", "O", "O"], "BIO")
