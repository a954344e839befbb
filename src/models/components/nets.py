"""Plain encoder/decoder networks for 28x28-style images.

The MLPs follow the author's MNIST VAE (kexue.fm/archives/5253: 784-256-2-256-784); the conv
pair follows his CNN VAE (two stride-2 convolutions down, two transposed convolutions up). The
last layer's width is left to the model (`out_dim`), which knows what its latent needs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from src.utils.bounds import PositiveInt


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(
        self, image_shape: Sequence[int], out_dim: PositiveInt, hidden: Sequence[int] = (256,)
    ):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), *hidden, out_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(
        self, image_shape: Sequence[int], in_dim: PositiveInt, hidden: Sequence[int] = (256,)
    ):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([in_dim, *hidden, math.prod(image_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (H -> H/4), then a hidden dense layer."""

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: PositiveInt,
        channels: Sequence[int] = (32, 64),
        hidden: PositiveInt = 256,
    ):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: dense to an (H/4, W/4) map, two stride-2 transposed convolutions."""

    def __init__(
        self,
        image_shape: Sequence[int],
        in_dim: PositiveInt,
        channels: Sequence[int] = (64, 32),
        hidden: PositiveInt = 256,
    ):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, c1 * (h // 4) * (w // 4)),
            nn.ReLU(),
            nn.Unflatten(1, (c1, h // 4, w // 4)),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
