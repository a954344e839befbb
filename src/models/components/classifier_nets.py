"""A small CNN classifier for 28x28 images whose penultimate layer doubles as a feature space.

conv32-conv32-pool-conv64-conv64-pool -> dense `feature_dim` (ReLU) -> dropout -> dense K.
`features(x)` returns the `feature_dim`-d ReLU layer: the space in which the sample-quality metrics
(src/metrics/sample_quality.py) compare generated and real images, since no Inception weights are
available offline.
"""

from __future__ import annotations

import torch
from torch import nn

from src.utils.bounds import PositiveInt, Probability


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]


class ConvClassifierNet(nn.Module):
    def __init__(
        self,
        in_channels: PositiveInt = 1,
        n_classes: PositiveInt = 10,
        width: PositiveInt = 32,
        feature_dim: PositiveInt = 128,
        dropout: Probability = 0.3,
        image_size: PositiveInt = 28,
    ) -> None:
        super().__init__()
        self.example_shape = (in_channels, image_size, image_size)
        self.feature_dim = feature_dim
        side = image_size // 4
        self.trunk = nn.Sequential(
            *_conv_block(in_channels, width),
            *_conv_block(width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
