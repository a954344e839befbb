"""Bounded numbers for constructor signatures, declared once with annotated-types: the config
check (`src/utils/config.py`) refuses an out-of-range value in one line before anything is built.

    def __init__(self, dim: PositiveInt, iwae_samples: NonNegativeInt = 100, ...)
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Interval

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Probability = Annotated[float, Interval(ge=0, le=1)]
Fraction = Annotated[float, Interval(ge=0, lt=1)]  # a share that leaves something over

# torch's optimisers are not annotated: their bounds by parameter name, for any torch.optim target
OPTIMIZER_BOUNDS = {"lr": Gt(0), "weight_decay": Ge(0), "momentum": Ge(0), "eps": Gt(0)}
