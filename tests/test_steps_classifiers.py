"""The steps of the three classifiers, driven through real Trainer runs of modules whose "nets"
pass chosen scores or logits through (plus a zero bias): `Classifier` (cross-entropy and
accuracy), `MultiItemClassifier` (margin loss, the reconstruction decoder kept on the label in
training and on the prediction in evaluation, the CNN baseline without poses, and the pairs
metrics of the second test loader) and `MultilabelClassifier` (its losses, exact-set accuracy,
sample F1 and micro F1, single items and pairs). Every logged metric and returned loss is
compared with a value counted or computed by hand, over uneven batches so that a mean of batch
means would differ from the size-weighted mean.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from src.losses.multilabel import BinaryCE, MultilabelCE
from src.losses.smooth import SmoothF1Loss
from tests.stubs import (
    RecordingLogger,
    StepOutputs,
    build_classifier,
    build_multi_item,
    build_multilabel,
    loader,
    trainer,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*val_dataloader.*", "ignore:.*log_every_n_steps.*")
Batch = tuple[torch.Tensor, torch.Tensor]


def cat(batches: list[Batch]) -> Batch:
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# ---------------------------------------------------------------- Classifier
CLASSIFIER_BATCHES = [
    # argmax 0, 1, 2 against labels 0, 2, 1: one right
    (torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 0.0, 3.0]]), torch.tensor([0, 2, 1])),
    # argmax 1, label 1: right
    (torch.tensor([[0.0, 1.5, 1.0]]), torch.tensor([1])),
    # argmax 1, 0 against labels 0, 0: one right
    (torch.tensor([[1.0, 1.2, 0.0], [0.5, -0.5, 0.4]]), torch.tensor([0, 0])),
]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example log sum_k e^{s_k} - s_label."""
    return logits.exp().sum(-1).log() - logits[torch.arange(len(labels)), labels]


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_classifier_logs_cross_entropy_and_accuracy_over_all_examples(stage: str) -> None:
    """acc = 3 of 6 (the batch means 1/3, 1, 1/2 would give 0.61); loss the mean cross-entropy
    of the 6; each step returns its batch's. Catches a mean of batch means, the accuracy of the
    argmin or of another axis, and the accuracy returned as the loss."""
    outputs = StepOutputs()
    run = trainer(callbacks=[outputs])
    (metrics,) = getattr(run, stage)(build_classifier(), loader(CLASSIFIER_BATCHES), verbose=False)
    prefix = "val" if stage == "validate" else "test"
    logits, labels = cat(CLASSIFIER_BATCHES)
    assert metrics[f"{prefix}/acc"] == pytest.approx(0.5)
    assert metrics[f"{prefix}/loss"] == pytest.approx(cross_entropy(logits, labels).mean().item())
    returned = outputs.val if stage == "validate" else [out for _, out in outputs.test]
    expected = [cross_entropy(x, y).mean().item() for x, y in CLASSIFIER_BATCHES]
    assert [out.item() for out in returned] == pytest.approx(expected)


# ---------------------------------------------------------------- MultiItemClassifier
def margin(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example sum_k T_k max(0, 0.9 - s_k)^2 + 0.5 (1 - T_k) max(0, s_k - 0.1)^2."""
    present = nn.functional.one_hot(labels, scores.shape[1]).bool()
    terms = torch.where(
        present, (0.9 - scores).clamp_min(0) ** 2, 0.5 * (scores - 0.1).clamp_min(0) ** 2
    )
    return terms.sum(-1)


def recon(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-example summed squared error of the stub decoder's one-hot of `keep`."""
    return (nn.functional.one_hot(keep, scores.shape[1]) - scores).pow(2).sum(-1)


# argmax 0, 2, 3 against labels 0, 1, 2: the training and the evaluation masks differ
ITEMS = (
    torch.tensor([[0.8, 0.3, 0.1, 0.0], [0.2, 0.5, 0.7, 0.1], [0.1, 0.0, 0.4, 0.6]]),
    torch.tensor([0, 1, 2]),
)


def test_the_decoder_keeps_the_label_in_training_and_the_prediction_in_evaluation() -> None:
    """The decoder is told the labels (0, 1, 2) in training and the argmax (0, 2, 3) in
    validation; recon, margin and loss = margin + 0.5 recon are the hand values of each.
    Catches the gold labels masking the decoder at evaluation time, and a recon term or weight
    dropped from the loss."""
    model = build_multi_item()
    outputs, logger = StepOutputs(), RecordingLogger()
    trainer(callbacks=[outputs], logger=logger).fit(model, loader([ITEMS]), loader([ITEMS]))
    scores, labels = ITEMS
    predicted = torch.tensor([0, 2, 3])
    train_keep, val_keep = model.decoder.kept
    assert torch.equal(train_keep, labels) and torch.equal(val_keep, predicted)
    m = margin(scores, labels).mean().item()
    (train_row,) = [row for _, row in logger.rows if "train/loss" in row]
    (val_row,) = [row for _, row in logger.rows if "val/loss" in row]
    for row, prefix, keep in ((train_row, "train", labels), (val_row, "val", predicted)):
        r = recon(scores, keep).mean().item()
        assert row[f"{prefix}/recon"] == pytest.approx(r)
        assert row[f"{prefix}/margin"] == pytest.approx(m)
        assert row[f"{prefix}/loss"] == pytest.approx(m + 0.5 * r)
        assert row[f"{prefix}/acc"] == pytest.approx(1 / 3)
    assert outputs.train[0].item() == pytest.approx(m + 0.5 * recon(scores, labels).mean().item())
    assert outputs.val[0].item() == pytest.approx(m + 0.5 * recon(scores, predicted).mean().item())


def test_the_cnn_baseline_without_poses_has_the_margin_alone_as_its_loss() -> None:
    """No poses: no decoder call, no recon term, loss = margin (uneven batches 2 + 1)."""
    model = build_multi_item(poses=False)
    data = [(ITEMS[0][:2], ITEMS[1][:2]), (ITEMS[0][2:], ITEMS[1][2:])]
    (metrics,) = trainer().validate(model, loader(data), verbose=False)
    m = margin(*ITEMS).mean().item()
    assert metrics == pytest.approx({"val/loss": m, "val/margin": m, "val/acc": 1 / 3})
    assert model.decoder.kept == []


# pairs (K = 4): (scores, pair) -> top-2 right?, the classes above 0.5 exactly the pair?
PAIR_ROWS = {
    "a": ([0.9, 0.1, 0.8, 0.2], [2, 0]),  # top2 yes, above yes
    "b": ([0.1, 0.6, 0.2, 0.45], [1, 3]),  # top2 yes, above no (only 1)
    "c": ([0.7, 0.1, 0.95, 0.6], [0, 2]),  # top2 yes (ranked 2, 0), above no (3 too)
    "d": ([0.3, 0.8, 0.55, 0.9], [1, 2]),  # top2 no (3, 1), above no
    "e": ([0.5, 0.2, 0.1, 0.7], [3, 0]),  # top2 yes, above no (0.5 is not above 0.5)
    "f": ([0.2, 0.9, 0.1, 0.8], [3, 1]),  # top2 yes, above yes
}


def pairs_batch(names: str) -> Batch:
    scores = torch.tensor([PAIR_ROWS[n][0] for n in names])
    return scores, torch.tensor([PAIR_ROWS[n][1] for n in names])


def test_single_item_and_pairs_metrics_of_the_two_test_loaders() -> None:
    """Loader 0, single items: test/acc 1/3 and the loss at the predicted mask. Loader 1, pairs
    in batches (d, a), (b, c, e, f): pairs_top2 = 5/6 and pairs_both_above = 2/6 (batch means
    would give 3/4 and 3/8). Catches an unsorted top-2 compared with the pair, a pair in the
    wrong order, >= 0.5 for "above", any() for all(), and unweighted batch means."""
    model = build_multi_item()
    singles = [(ITEMS[0][:1], ITEMS[1][:1]), (ITEMS[0][1:], ITEMS[1][1:])]
    pairs = [pairs_batch("da"), pairs_batch("bcef")]
    single_metrics, pair_metrics = trainer().test(
        model, [loader(singles), loader(pairs)], verbose=False
    )
    scores, labels = ITEMS
    loss = margin(scores, labels) + 0.5 * recon(scores, torch.tensor([0, 2, 3]))
    assert single_metrics["test/acc"] == pytest.approx(1 / 3)
    assert single_metrics["test/loss"] == pytest.approx(loss.mean().item())
    assert pair_metrics == pytest.approx({"test/pairs_top2": 5 / 6, "test/pairs_both_above": 2 / 6})


# ---------------------------------------------------------------- MultilabelClassifier
# logits (K = 4) and labels; P = {k : s_k > 0}. Pairs batch:
#   r1 P {0, 2} Y {0, 2}: exact, 2|P&Y|/(|P|+|Y|) = 1, TP 2
#   r2 P {1, 3} Y {0, 1} (s_0 = 0 is not > 0): 1/2, TP 1 FP 1 FN 1; top-2 {1, 3}: wrong
#   r3 P {2, 3} Y {2, 3}: exact, 1, TP 2
# singles batch:
#   r4 P {0, 1} Y {1}: 2/3, TP 1 FP 1
#   r5 P {} Y {3}: 0, FN 1
PAIRS = (
    torch.tensor([[2.0, -1.0, 0.5, -0.3], [0.0, 1.0, -2.0, 0.4], [-1.0, -0.5, 0.7, 1.2]]),
    torch.tensor([[0, 2], [0, 1], [3, 2]]),
)
SINGLES = (torch.tensor([[0.3, 0.2, -1.0, -1.0], [-0.2, -0.1, -3.0, -0.4]]), torch.tensor([1, 3]))


def targets_of(labels: torch.Tensor) -> torch.Tensor:
    rows = labels if labels.ndim == 2 else labels[:, None]
    return torch.zeros(len(rows), 4).scatter(1, rows, 1.0)


def multilabel_ce(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch mean of log(1 + sum_neg e^{s}) + log(1 + sum_pos e^{-s})."""
    return ((1 + ((1 - y) * s.exp()).sum(-1)).log() + (1 + (y * (-s).exp()).sum(-1)).log()).mean()


def binary_ce(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch mean of sum_k -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))]."""
    p = 1 / (1 + (-s).exp())
    return -(y * p.log() + (1 - y) * (1 - p).log()).sum(-1).mean()


def smooth_f1_loss(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - 2 sum y p / sum (y + p) over the batch, p = sigmoid(s)."""
    p = 1 / (1 + (-s).exp())
    return 1 - 2 * (y * p).sum() / (y + p).sum()


LOSSES: dict[str, tuple[Callable[[], nn.Module], Callable[..., torch.Tensor]]] = {
    "multilabel_ce": (MultilabelCE, multilabel_ce),
    "bce": (BinaryCE, binary_ce),
    "smooth_f1": (SmoothF1Loss, smooth_f1_loss),
}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_multilabel_metrics_and_loss_are_hand_counts_over_the_epoch(stage: str, loss: str) -> None:
    """A pairs batch (3) and a singles batch (2): exact 2/5 (batch means: 1/3), sample_f1
    (1 + 1/2 + 1 + 2/3 + 0) / 5, micro F1 2 TP / (2 TP + FP + FN) = 12/16 (batch means: 2/3;
    validation only), the loss the size-weighted mean of the batch losses, each step returning
    its own. Catches s >= 0 as the decision rule, targets built from one label of a pair, the
    F1 of the last batch or a mean of batch F1s, and the loss of swapped arguments."""
    plugin, by_hand = LOSSES[loss]
    model = build_multilabel(loss=plugin())
    data = [PAIRS, SINGLES]
    outputs, logger = StepOutputs(), RecordingLogger()
    run = trainer(callbacks=[outputs], logger=logger)
    if stage == "fit":
        run.fit(model, loader(data))
        (row,) = [row for _, row in logger.rows if "train/loss" in row]
        prefix, returned = "train", outputs.train
    else:
        (row,) = run.validate(model, loader(data), verbose=False)
        prefix, returned = "val", outputs.val
        assert row["val/f1"] == pytest.approx(0.75)
    batch_losses = [by_hand(s, targets_of(y)).item() for s, y in data]
    assert [out.item() for out in returned] == pytest.approx(batch_losses, rel=1e-5)
    assert row[f"{prefix}/loss"] == pytest.approx((3 * batch_losses[0] + 2 * batch_losses[1]) / 5)
    assert row[f"{prefix}/exact"] == pytest.approx(0.4)
    assert row[f"{prefix}/sample_f1"] == pytest.approx((1 + 1 / 2 + 1 + 2 / 3) / 5)
    assert f"{prefix}/top2" not in row and f"{prefix}/pairs_top2" not in row


def test_multilabel_test_loaders_log_single_items_and_pairs_apart() -> None:
    """Loader 0 (singles r4, r5): exact 0, sample_f1 1/3, f1 2/4. Loader 1 (pairs r1-r3):
    pairs_exact 2/3, pairs_sample_f1 5/6, pairs_f1 10/12, pairs_top2 2/3. Catches the two
    loaders sharing one F1 count or one prefix."""
    model = build_multilabel()
    singles, pairs = trainer().test(model, [loader([SINGLES]), loader([PAIRS])], verbose=False)
    loss = multilabel_ce(SINGLES[0], targets_of(SINGLES[1])).item()
    assert singles == pytest.approx(
        {"test/loss": loss, "test/exact": 0.0, "test/sample_f1": 1 / 3, "test/f1": 0.5}
    )
    loss = multilabel_ce(PAIRS[0], targets_of(PAIRS[1])).item()
    assert pairs == pytest.approx(
        {
            "test/pairs_loss": loss,
            "test/pairs_exact": 2 / 3,
            "test/pairs_sample_f1": 5 / 6,
            "test/pairs_f1": 5 / 6,
            "test/pairs_top2": 2 / 3,
        }
    )
