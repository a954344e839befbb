"""The sequence tagger's steps (src/models/crf_tagger.py) with the CRF head and `head=softmax`,
driven through real Trainer runs of a tagger whose emissions are a lookup table chosen by the
test (a stub encoder, the emission layer set to the identity): the loss against cross-entropy
over the real tokens / a brute-force CRF likelihood over every tag path, unchanged by garbage in
the padding; decoding against a brute-force search over the paths the BIO scheme allows; and the
span precision / recall / F1, per-type F1 and token accuracy logged at the end of validation and
test against hand counts, in a case where precision != recall, for two gold labelings of the
same sentences (the predictions must not move with the gold tags, and the counts of one run
must not leak into the next).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from src.models.crf_tagger import CRFTagger
from tests.stubs import TAGS, VOCAB, StepOutputs, build_tagger, loader, trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*log_every_n_steps.*")
OUT, B_PER, I_PER, B_LOC, I_LOC = range(5)  # the ids of TAGS; OUT is "O"
PAD, JUNK = 0, VOCAB.index("junk")
# s1 "p q o l m", s2 "o q o", s3 "l o" (token ids of VOCAB)
SENTENCES = [[2, 3, 1, 4, 5], [1, 3, 1], [4, 1]]
# gold tags: labeling 1 has 5 spans (PER 0-2, LOC 3-4 | LOC 0-1, PER 1-2 | LOC 0-1), labeling 2
# has 2 (PER 0-2, LOC 3-5 | - | -)
GOLD = {
    1: [[B_PER, I_PER, OUT, B_LOC, OUT], [B_LOC, B_PER, OUT], [B_LOC, OUT]],
    2: [[B_PER, I_PER, OUT, B_LOC, I_LOC], [OUT, OUT, OUT], [OUT, OUT]],
}
# the predictions, from the emissions: "q" after "o" is I-PER for the softmax head (no span) and
# B-PER for the CRF, whose BIO constraints forbid O -> I-PER
PREDICTED = {
    "crf": [[B_PER, I_PER, OUT, B_LOC, I_LOC], [OUT, B_PER, OUT], [B_LOC, OUT]],
    "softmax": [[B_PER, I_PER, OUT, B_LOC, I_LOC], [OUT, I_PER, OUT], [B_LOC, OUT]],
}
# hand counts of PREDICTED against GOLD (strict BIO spans; 10 tokens):
#   crf, gold 1:     pred 4, gold 5, tp 3 (PER 2/2/2, LOC 2/3/1); tokens 4 + 2 + 2 right
#   softmax, gold 1: pred 3, gold 5, tp 2 (PER 1/2/1, LOC 2/3/1); tokens 4 + 1 + 2
#   crf, gold 2:     pred 4, gold 2, tp 2 (PER 2/1/1, LOC 2/1/1); tokens 5 + 2 + 1
#   softmax, gold 2: pred 3, gold 2, tp 2 (PER 1/1/1, LOC 2/1/1); tokens 5 + 2 + 1
METRICS = ("precision", "recall", "f1", "f1_PER", "f1_LOC", "token_acc")
EXPECTED = {
    ("crf", 1): (3 / 4, 3 / 5, 2 / 3, 1.0, 0.4, 0.8),
    ("softmax", 1): (2 / 3, 2 / 5, 0.5, 2 / 3, 0.4, 0.7),
    ("crf", 2): (1 / 2, 1.0, 2 / 3, 2 / 3, 2 / 3, 0.8),
    ("softmax", 2): (2 / 3, 1.0, 0.8, 1.0, 2 / 3, 0.8),
}


def batch(
    sentences: list[list[int]], tags: list[list[int]], garbage: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, tags, mask), padded with 0 as the data module does, or with garbage: the junk
    token (30 nats for I-LOC) and the tag I-LOC."""
    length = max(len(s) for s in sentences)
    fill_token, fill_tag = (JUNK, I_LOC) if garbage else (PAD, OUT)
    tokens = torch.tensor([s + [fill_token] * (length - len(s)) for s in sentences])
    gold = torch.tensor([t + [fill_tag] * (length - len(t)) for t in tags])
    mask = torch.tensor([[i < len(s) for i in range(length)] for s in sentences])
    return tokens, gold, mask


def epoch_batches(gold: list[list[int]], garbage: bool = True) -> list[tuple[torch.Tensor, ...]]:
    """s1 and s2 (padded) in one batch, s3 alone in another."""
    return [batch(SENTENCES[:2], gold[:2], garbage), batch(SENTENCES[2:], gold[2:], garbage)]


def allowed_bio(paths: torch.Tensor) -> torch.Tensor:
    """BIO by hand, for each path (rows): I-X only right after B-X or I-X."""
    previous = torch.cat([torch.full_like(paths[:, :1], OUT), paths[:, :-1]], 1)
    bad_per = (paths == I_PER) & (previous != B_PER) & (previous != I_PER)
    bad_loc = (paths == I_LOC) & (previous != B_LOC) & (previous != I_LOC)
    return ~(bad_per | bad_loc).any(1)


def path_scores(model: CRFTagger, sentence: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tag path (rows) and its score(y) = start(y_1) + sum_t h_t(y_t) + sum_t g(y_t, y_t+1)
    + end(y_L), in float64."""
    crf = model.tagger.head
    start, end, g = (
        p.detach().double() for p in (crf.start_transitions, crf.end_transitions, crf.transitions)
    )
    h = model.tagger.encoder.table[sentence].double()
    paths = torch.tensor(list(itertools.product(range(len(TAGS)), repeat=len(sentence))))
    scores = start[paths[:, 0]] + end[paths[:, -1]] + h[range(len(sentence)), paths].sum(1)
    return paths, scores + g[paths[:, :-1], paths[:, 1:]].sum(1)


def nll_by_hand(model: CRFTagger, sentence: list[int], gold: list[int]) -> float:
    """-log P(gold | sentence): over every tag path for the CRF, per-token softmax otherwise."""
    if model.hparams.head == "softmax":
        logits = model.tagger.encoder.table[sentence].double()
        return float((logits.exp().sum(-1).log() - logits[range(len(gold)), gold]).sum())
    paths, scores = path_scores(model, sentence)
    gold_row = (paths == torch.tensor(gold)).all(1)
    return float(torch.logsumexp(scores, 0) - scores[gold_row].squeeze())


@pytest.mark.parametrize("reduction", ["mean", "token_mean", "sum"])
@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_the_loss_counts_the_real_tokens_only(head: str, reduction: str) -> None:
    """The loss of the padded batch (s1, s2) in training and validation, with 0 or garbage in the
    padding: the hand nll of the two sentences, reduced over 2 sentences or 8 tokens. Catches a
    loss over padded positions (the junk emissions, the garbage gold tags), a mask that counts
    padding in token_mean, and a train-only or eval-only wiring."""
    model = build_tagger(head, reduction)
    gold = GOLD[1]
    clean, garbage = (batch(SENTENCES[:2], gold[:2], g) for g in (False, True))
    nll = [nll_by_hand(model, s, t) for s, t in zip(SENTENCES[:2], gold[:2], strict=True)]
    expected = {"mean": sum(nll) / 2, "token_mean": sum(nll) / 8, "sum": sum(nll)}[reduction]
    outputs = StepOutputs()
    trainer(callbacks=[outputs]).fit(model, loader([clean, garbage]), loader([clean, garbage]))
    assert [float(x) for x in outputs.train] == pytest.approx([expected] * 2, rel=1e-5)
    assert [float(x) for x in outputs.val] == pytest.approx([expected] * 2, rel=1e-5)
    assert float(trainer().validate(model, loader([garbage]), verbose=False)[0]["val/loss"]) == (
        pytest.approx(expected, rel=1e-5)
    )


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_decode_is_the_best_allowed_path_whatever_the_padding_holds(head: str) -> None:
    """Brute force over the 5^L paths (BIO-allowed ones for the CRF), per-token argmax for the
    softmax head; -1 at padding. It also checks the PREDICTED paths the metric counts rest on.
    Catches a dropped transition constraint and a mask ignored (the junk padding would pull an
    I-LOC path into the real positions)."""
    model = build_tagger(head)
    tokens, _, mask = batch(SENTENCES, [[OUT] * len(s) for s in SENTENCES], garbage=True)
    decoded = model.decode(tokens, mask)
    for row, sentence, predicted in zip(decoded, SENTENCES, PREDICTED[head], strict=True):
        if head == "crf":
            paths, scores = path_scores(model, sentence)
            best = paths[scores.masked_fill(~allowed_bio(paths), -torch.inf).argmax()].tolist()
        else:
            best = model.tagger.encoder.table[sentence].argmax(-1).tolist()
        assert best == predicted
        assert row.tolist() == predicted + [-1] * (len(row) - len(sentence))


@pytest.mark.parametrize("stage", ["validate", "test"])
@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_span_metrics_count_predictions_against_gold(head: str, stage: str) -> None:
    """Two runs on the same sentences (garbage padding), gold labeling 1 then 2: the logged
    precision, recall, F1, f1_<TYPE> and token accuracy of each run are the hand counts of the
    fixed predictions against that run's gold. Catches precision and recall swapped (preds and
    gold in the wrong order), decoding that looks at the gold tags or uses them as the mask,
    counts kept from the previous run, and only the last batch counted. The loss: the mean nll
    of the 3 sentences (batches of 2 and 1 sentences weighted by their size)."""
    model = build_tagger(head)
    prefix = "val" if stage == "validate" else "test"
    for labeling in (1, 2):
        run = trainer()
        metrics = getattr(run, stage)(model, loader(epoch_batches(GOLD[labeling])), verbose=False)
        nll = [nll_by_hand(model, s, t) for s, t in zip(SENTENCES, GOLD[labeling], strict=True)]
        expected = {
            f"{prefix}/{name}": value
            for name, value in zip(METRICS, EXPECTED[(head, labeling)], strict=True)
        }
        expected[f"{prefix}/loss"] = sum(nll) / 3
        assert metrics[0] == pytest.approx(expected, rel=1e-5, abs=1e-6), labeling


def test_without_spans_f1_is_the_token_accuracy() -> None:
    """A POS-style tag set (scheme None): val/f1 = val/token_acc = 6 of 8 tokens, no span
    precision. Catches the fallback taking another metric or the counts of the padding."""
    tags = ["NN", "VB", "DT"]
    table = torch.zeros(len(VOCAB), len(tags))
    for token, tag in ((1, 0), (2, 1), (3, 2), (4, 0), (5, 1), (JUNK, 2)):
        table[token, tag] = 3.0
    model = build_tagger("crf", tags=tags, scheme=None, table=table)
    sentences = [[1, 2, 3, 4], [5, 1], [4, 5]]  # predicted NN VB DT NN | VB NN | NN VB
    gold = [[0, 1, 0, 0], [1, 2], [0, 1]]  # right: 3 of 4 | 1 of 2 | 2 of 2
    data = [batch(sentences[:2], gold[:2], garbage=True), batch(sentences[2:], gold[2:])]
    (metrics,) = trainer().validate(model, loader(data), verbose=False)
    assert metrics["val/f1"] == pytest.approx(6 / 8)
    assert metrics["val/token_acc"] == pytest.approx(6 / 8)
    assert "val/precision" not in metrics
