"""Gradients where an evaluation needs them, also inside Lightning's inference mode.

Lightning runs validation and testing under `torch.inference_mode()` by default, where autograd
is off and tensors cannot be saved for backward. A Langevin chain and the critic's gradient norm
differentiate with respect to their inputs in evaluation too; they do it inside `gradients_on()`
(the norm on a `leaf` copy of its input), so every model runs under the trainer's default
settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def gradients_on() -> Iterator[None]:
    """Autograd on, inference mode off, for the block; both as they were afterwards."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def leaf(x: torch.Tensor) -> torch.Tensor:
    """`x` as a new leaf that records its gradient. An inference-mode tensor (a batch of an
    evaluation loop) is copied, since autograd cannot save it; call it inside `gradients_on()`."""
    return (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)
