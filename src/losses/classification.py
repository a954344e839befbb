"""Cross-entropy for single-label classifiers (task "classification"):
L = -log softmax(s)_y, optionally with label smoothing eps: targets (1 - eps) onehot + eps / K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.utils.bounds import Probability


class CrossEntropy(nn.Module):
    task = "classification"

    def __init__(self, label_smoothing: Probability = 0.0) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return {"loss": loss}
