"""Generator and critic networks for WGAN-GP (kexue.fm/archives/4439) and other adversarial models.

- `MLPGenerator` / `MLPCritic`: the author's MNIST MLPs (critic 784-128-32-1, generator from a 10-d
  uniform code) and, with other widths, the 2-d toy nets.
- `DCGANGenerator` / `DCGANCritic`: DCGAN-style conv nets for 28x28 images (7x7 -> 14x14 -> 28x28).

Critics never use BatchNorm: it couples the samples of a batch, which breaks the per-sample
gradient penalty (`src/losses/gradient_penalty.py`); they take `norm="layer"` or `"none"`.
Generators end in a sigmoid for images in [0, 1] or have no output activation for points in R^d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from src.models.components.nets import mlp
from src.utils.bounds import PositiveInt
from src.utils.errors import UserError

Code = Literal["uniform", "normal"]
# "batch" is accepted by the config check only to be refused with the reason below
Norm = Literal["layer", "none", "batch"]
OutActivation = Literal["sigmoid", "none"]


def _check_critic_norm(norm: str) -> None:
    if norm not in ("layer", "none"):
        raise UserError(
            f"critic norm={norm!r}: a WGAN-GP critic must not use BatchNorm (it couples the "
            "samples of a batch and breaks the per-sample gradient penalty); use "
            "model.critic.norm=layer or model.critic.norm=none."
        )


class Generator(nn.Module):
    """Draws its own codes: `sample_code(n)` from U(-1, 1)^d or N(0, I), `forward(z)` -> samples."""

    def __init__(self, latent_dim: int, code: Code = "normal") -> None:
        super().__init__()
        if code not in ("uniform", "normal"):
            raise UserError(f"generator code={code!r}: choose 'uniform' or 'normal'.")
        self.latent_dim, self.code = latent_dim, code

    def sample_code(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """n codes on `device`, drawn on the device of `generator` when one is given."""
        shape, source = (n, self.latent_dim), generator.device if generator else device
        if self.code == "uniform":
            z = torch.rand(shape, generator=generator, device=source) * 2 - 1
        else:
            z = torch.randn(shape, generator=generator, device=source)
        return z.to(device)


def _out_activation(name: OutActivation) -> nn.Module:
    if name not in ("sigmoid", "none"):
        raise UserError(f"generator out_activation={name!r}: choose 'sigmoid' or 'none'.")
    return nn.Sigmoid() if name == "sigmoid" else nn.Identity()


class MLPGenerator(Generator):
    def __init__(
        self,
        out_shape: Sequence[int],
        latent_dim: PositiveInt = 10,
        hidden: Sequence[int] = (128, 256),
        code: Code = "uniform",
        out_activation: OutActivation = "sigmoid",
    ) -> None:
        super().__init__(latent_dim, code)
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            mlp([latent_dim, *hidden, math.prod(out_shape)]), _out_activation(out_activation)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class MLPCritic(nn.Module):
    """D: R^{in_shape} -> R, Linear/LayerNorm/LeakyReLU blocks (LayerNorm with norm="layer")."""

    def __init__(
        self, in_shape: Sequence[int], hidden: Sequence[int] = (128, 32), norm: Norm = "none"
    ) -> None:
        super().__init__()
        _check_critic_norm(norm)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if norm == "layer":
                layers.append(nn.LayerNorm(size))
            layers.append(nn.LeakyReLU(0.2))
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class DCGANGenerator(Generator):
    """z -> dense (2w, 7, 7) -> up-conv (w, 14, 14) -> up-conv (C, 28, 28) -> sigmoid."""

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: PositiveInt = 64,
        width: PositiveInt = 64,
        code: Code = "normal",
    ) -> None:
        super().__init__(latent_dim, code)
        c, h, w = image_shape
        if (h, w) != (28, 28):
            raise UserError(f"DCGANGenerator makes 28x28 images, not {h}x{w}: use MLPGenerator.")
        self.out_shape = (c, h, w)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 7 * 7),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGANCritic(nn.Module):
    """(C, 28, 28) -> conv (w, 14, 14) -> conv (2w, 7, 7) -> dense 1, LeakyReLU, no BatchNorm."""

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        width: PositiveInt = 64,
        norm: Norm = "layer",
    ) -> None:
        super().__init__()
        _check_critic_norm(norm)
        c = image_shape[0]

        def normalise(channels: int, size: int) -> nn.Module:
            return nn.LayerNorm([channels, size, size]) if norm == "layer" else nn.Identity()

        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            normalise(2 * width, 7),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
