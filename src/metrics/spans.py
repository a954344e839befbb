"""Span metrics for sequence tagging: span F1.

Spans are those of `src.utils.tag_schemes` (BIO, BIOES, BMES; None: no spans, e.g. POS tagging,
where only token accuracy is meaningful), extracted strictly as seqeval's mode="strict" does.

`SpanF1` scores predicted tag ids against gold ones as seqeval does: micro precision, recall
and F1 over all spans (0 when undefined, as zero_division=0), F1 per type, and token accuracy.
Its states are counts summed across processes, so it is exact under DDP.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from src.utils.tag_schemes import check_scheme, parse_tag, scan


def _prf(
    tp: torch.Tensor, pred: torch.Tensor, gold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 from counts, each 0 where undefined (seqeval's zero_division=0)."""
    precision = torch.where(pred > 0, tp / pred.clamp_min(1), 0.0)
    recall = torch.where(gold > 0, tp / gold.clamp_min(1), 0.0)
    denom = precision + recall
    return precision, recall, 2 * precision * recall / torch.where(denom > 0, denom, 1.0)


class SpanF1(Metric):
    """Strict span precision/recall/F1 (micro), F1 per span type, and token accuracy.

    `tags` names the tag ids; `scheme` is "BIO", "BIOES", "BMES" or None (token accuracy only).
    `update(preds, target, mask)` takes (B, T) tag ids and a (B, T) bool mask of real tokens;
    padding may hold anything (e.g. -1). `compute()` returns a dict of scalars: precision,
    recall, f1, f1_<TYPE> for every named type, token_acc.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tags: list[str], scheme: str | None) -> None:
        super().__init__()
        self.tags = list(tags)
        self.scheme = scheme
        self._rule = None if scheme is None else check_scheme(self.tags, scheme)
        self.types: list[str] = []
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")
        if self._rule is None:
            return
        parsed = [parse_tag(tag) for tag in self.tags]
        self.types = sorted({kind for prefix, kind in parsed if prefix != "O"})
        index = {kind: k for k, kind in enumerate(self.types)}
        self._parsed = [(prefix, index.get(kind, -1)) for prefix, kind in parsed]
        n_types = len(self.types)
        self.add_state("tp", torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pred", torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("gold", torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Count the tokens and spans of one batch; positions where `mask` is False are skipped."""
        if not preds.shape == target.shape == mask.shape:
            raise ValueError(
                f"preds {tuple(preds.shape)}, target {tuple(target.shape)} and mask "
                f"{tuple(mask.shape)} must have the same (B, T) shape"
            )
        mask = mask.bool()
        pred_flat, gold_flat = preds[mask], target[mask]
        self.correct += (pred_flat == gold_flat).sum()
        self.total += gold_flat.numel()
        if self._rule is None:
            return
        counts = self._count_spans(mask.sum(1).tolist(), pred_flat.tolist(), gold_flat.tolist())
        self.tp += torch.tensor(counts[0], device=self.tp.device)
        self.pred += torch.tensor(counts[1], device=self.pred.device)
        self.gold += torch.tensor(counts[2], device=self.gold.device)

    def _count_spans(
        self, lengths: list[int], pred_ids: list[int], gold_ids: list[int]
    ) -> tuple[list[int], list[int], list[int]]:
        """Per-type true-positive, predicted and gold span counts of sentences laid end to end."""
        parsed, rule = self._parsed, self._rule
        tp, n_pred, n_gold = ([0] * len(self.types) for _ in range(3))
        start = 0
        for length in lengths:
            stop = start + length
            pred_seq, gold_seq = pred_ids[start:stop], gold_ids[start:stop]
            gold = scan([parsed[t] for t in gold_seq], rule)
            pred = gold if pred_seq == gold_seq else scan([parsed[t] for t in pred_seq], rule)
            for span in gold:
                n_gold[span.kind] += 1
            for span in pred:
                n_pred[span.kind] += 1
            for span in set(gold).intersection(pred):
                tp[span.kind] += 1
            start = stop
        return tp, n_pred, n_gold

    def compute(self) -> dict[str, torch.Tensor]:
        """precision, recall, f1 (micro), f1_<TYPE> per named type, and token_acc."""
        out = {}
        if self._rule is not None:
            tp, pred, gold = self.tp.double(), self.pred.double(), self.gold.double()
            precision, recall, f1 = _prf(tp.sum(), pred.sum(), gold.sum())
            out.update(precision=precision, recall=recall, f1=f1)
            per_type = _prf(tp, pred, gold)[2]
            out.update({f"f1_{kind}": per_type[k] for k, kind in enumerate(self.types) if kind})
        out["token_acc"] = self.correct / self.total.clamp_min(1)
        return {name: value.float() for name, value in out.items()}
