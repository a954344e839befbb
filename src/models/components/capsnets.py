"""Capsule networks and the author's CNN baseline: images -> class scores in [0, 1] (+ poses).

- `SabourCapsNet` (Sabour et al. 2017): Conv(256, 9x9) -> PrimaryCaps(32 maps x 8-d, 9x9,
  stride 2) -> DigitCaps(10 x 16-d, per-input weights, 3 routings). Fixed input size.
- `SmallCapsNet` (kexue.fm/archives/4819, ~270k parameters): Conv64-Conv64-AvgPool-Conv128-
  Conv128, every position a 128-d capsule, Capsule(10, 16, 3 routings, shared weights). Fully
  convolutional up to a routing layer that takes any number of capsules: runs on 56x28.
- `CNNSigmoid`: the same backbone, global average pooling and 10 sigmoid outputs; `CNNLogits`
  is the same net without the sigmoid, for the multilabel losses that take logits.

A capsule net's class score is its output capsule's length; the scores are independent
probabilities, not a softmax, so a net trained on single items can report two items at once.
"""

from __future__ import annotations

import torch
from torch import nn

from src.models.components.capsule import PrimaryCapsules, Routing
from src.utils.bounds import PositiveFloat, PositiveInt


def small_backbone(in_channels: int = 1, width: int = 64) -> nn.Sequential:
    """Conv(w)-Conv(w)-AvgPool(2)-Conv(2w)-Conv(2w), 3x3 same padding, ReLU, He-initialised
    (PyTorch's default initialisation shrinks the signal 4 layers deep; training starts slowly)."""

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        layer = nn.Conv2d(c_in, c_out, 3, padding=1)
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # keeps the signal's scale
        nn.init.zeros_(layer.bias)
        return [layer, nn.ReLU()]

    return nn.Sequential(
        *conv(in_channels, width),
        *conv(width, width),
        nn.AvgPool2d(2),
        *conv(width, 2 * width),
        *conv(2 * width, 2 * width),
    )


class SmallCapsNet(nn.Module):
    def __init__(
        self,
        in_channels: PositiveInt = 1,
        n_classes: PositiveInt = 10,
        width: PositiveInt = 64,
        capsule_dim: PositiveInt = 16,
        iterations: PositiveInt = 3,
        revised: bool = False,
        squash_constant: PositiveFloat = 1.0,
        detach_iterations: bool = False,
    ) -> None:
        super().__init__()
        self.example_shape = (in_channels, None, None)  # any image size
        self.backbone = small_backbone(in_channels, width)
        self.primary = PrimaryCapsules(2 * width, kernel_size=None)
        self.routing = Routing(
            2 * width,
            n_classes,
            capsule_dim,
            iterations,
            shared_weights=True,
            revised=revised,
            squash_constant=squash_constant,
            detach_iterations=detach_iterations,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (B, classes) = capsule lengths, poses (B, classes, capsule_dim))."""
        poses = self.routing(self.primary(self.backbone(x)))
        return poses.norm(dim=-1), poses


class SabourCapsNet(nn.Module):
    fixed_input_size = True  # per-input routing weights: one image size only

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        n_classes: PositiveInt = 10,
        conv_channels: PositiveInt = 256,
        n_maps: PositiveInt = 32,
        primary_dim: PositiveInt = 8,
        capsule_dim: PositiveInt = 16,
        iterations: PositiveInt = 3,
        revised: bool = False,
        squash_constant: PositiveFloat = 1.0,
        detach_iterations: bool = False,
    ) -> None:
        super().__init__()
        self.example_shape = tuple(image_shape)
        c, h, w = image_shape
        self.conv = nn.Sequential(nn.Conv2d(c, conv_channels, 9), nn.ReLU())
        self.primary = PrimaryCapsules(conv_channels, primary_dim, n_maps, 9, 2, squash_constant)
        grid = ((h - 8 - 9) // 2 + 1) * ((w - 8 - 9) // 2 + 1)
        self.routing = Routing(
            primary_dim,
            n_classes,
            capsule_dim,
            iterations,
            shared_weights=False,
            in_caps=n_maps * grid,
            revised=revised,
            squash_constant=squash_constant,
            detach_iterations=detach_iterations,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        poses = self.routing(self.primary(self.conv(x)))
        return poses.norm(dim=-1), poses


class CNNLogits(nn.Module):
    """The small backbone, global average pooling, a linear layer: class logits (B, classes)."""

    def __init__(
        self, in_channels: PositiveInt = 1, n_classes: PositiveInt = 10, width: PositiveInt = 64
    ) -> None:
        super().__init__()
        self.example_shape = (in_channels, None, None)  # any image size
        self.backbone = small_backbone(in_channels, width)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean((2, 3)))


class CNNSigmoid(CNNLogits):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.sigmoid(super().forward(x)), None


class ReconstructionDecoder(nn.Module):
    """Sabour's decoder: the class capsules, all but one masked to zero -> 512 -> 1024 -> pixels."""

    def __init__(
        self,
        n_classes: PositiveInt,
        capsule_dim: PositiveInt,
        image_shape: tuple[int, int, int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        self.net = nn.Sequential(
            nn.Linear(n_classes * capsule_dim, 512),
            nn.ReLU(),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, pixels),
            nn.Sigmoid(),
        )

    def forward(self, poses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Images from the poses of class `keep` (B,), the other capsules zeroed."""
        mask = nn.functional.one_hot(keep, poses.shape[1]).to(poses.dtype)
        return self.net((poses * mask[..., None]).flatten(1)).view(-1, *self.image_shape)
