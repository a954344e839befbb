"""Energy networks E(x) -> (B,) for p(x) = exp(-E(x)) / Z (kexue.fm/archives/6316).

Smooth activations (SiLU) keep grad_x E continuous, which Langevin sampling follows; there is no
normalisation layer, so a sample's energy does not depend on the rest of its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from src.models.components.nets import mlp


class MLPEnergy(nn.Module):
    """An MLP from the flattened input to one energy per example (2-d toy data)."""

    def __init__(self, data_shape: Sequence[int] = (2,), hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), mlp([math.prod(data_shape), *hidden, 1], activation=nn.SiLU)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class ConvEnergy(nn.Module):
    """A SiLU conv net for 28x28 images: 3x3 convs, stride 2 at each of `channels` after the
    first (28 -> 14 -> 7 -> 4), global sum pooling, then a linear read-out."""

    def __init__(
        self, data_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (32, 64, 128, 128)
    ):
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = data_shape[0]
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(fan_in, width, 3, stride=1 if i == 0 else 2, padding=1), nn.SiLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        self.readout = nn.Linear(fan_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x).sum((-2, -1))).squeeze(-1)
