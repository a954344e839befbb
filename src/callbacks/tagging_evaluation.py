"""What a sequence tagger shows in TensorBoard, written once (`callbacks.tagging_examples`):

- `val/examples`: a markdown table of gold vs predicted tagging of `n_examples` validation
  sentences spread over the split (a predicted row that differs is marked ✗), from the model's
  `tag_sentences(sentences)` and `format(tokens, tags)` and the data module's `splits["val"]`;
- `val/transitions`: a CRF's transition scores g(i, j) as a heatmap (row: from, column: to),
  when the model's `transition_scores()` gives them (a softmax head has none).

At the end of every validation with a TensorBoard logger, never in the sanity check.
"""

from __future__ import annotations

import lightning.pytorch as pl

from src.evaluation.figures import transitions_figure
from src.utils.bounds import NonNegativeInt
from src.utils.errors import UserError
from src.utils.images import has_image_logger, log_figure, log_text

PROTOCOL = ("tag_sentences", "format", "transition_scores")


class TaggingExamplesCallback(pl.Callback):
    evaluation = True  # eval.py evaluates a checkpoint with it too

    def __init__(self, n_examples: NonNegativeInt = 8) -> None:
        self.n_examples = n_examples

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        missing = [name for name in PROTOCOL if not callable(getattr(pl_module, name, None))]
        if missing:
            raise UserError(
                f"callbacks.tagging_examples shows a tagger's output; {type(pl_module).__name__} "
                f"has no {', '.join(f'{m}()' for m in missing)}: remove the callback."
            )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not has_image_logger(trainer):
            return
        self._examples(trainer, pl_module)
        scores = pl_module.transition_scores()
        if scores is not None:
            figure = transitions_figure(scores.detach(), pl_module.tags)
            log_figure(trainer, "val/transitions", figure)

    def _examples(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        splits = getattr(trainer.datamodule, "splits", None)
        sentences = splits.get("val") if isinstance(splits, dict) else None
        if not sentences or not self.n_examples:
            return
        step = max(1, len(sentences) // self.n_examples)
        chosen = sentences[::step][: self.n_examples]
        predicted = pl_module.tag_sentences([tokens for tokens, _ in chosen])
        rows = ["| gold | predicted |", "|---|---|"]
        for (tokens, gold), pred in zip(chosen, predicted, strict=True):
            mark = "" if gold == pred else " ✗"
            shown = f"{pl_module.format(tokens, gold)} | {pl_module.format(tokens, pred)}{mark}"
            rows.append(f"| {shown} |")
        log_text(trainer, "val/examples", "\n".join(rows))
