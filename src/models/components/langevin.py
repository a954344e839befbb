"""Langevin sampling from an energy model and its replay buffer (kexue.fm/archives/6316).

For p(x) = exp(-E(x)) / Z, the Langevin chain

    x_{k+1} = clamp(x_k - step_size * clamp(grad_x E(x_k), -g, g) + noise * n_k),  n_k ~ N(0, I)

leaves p invariant as step_size -> 0 when noise = sqrt(2 step_size) (the default, `noise=None`).
Image models decouple the two (IGEBM: 60 steps, step 10, noise 0.005) and clamp each gradient
entry to [-g, g] and each sample to the data range [lo, hi].

`ReplayBuffer` keeps the chains' end points; a batch of chains starts from random buffer entries,
each re-initialised from uniform noise on the data range with probability `reinit_prob` (IGEBM:
5%), and the chains' end points go back to the places they were drawn from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from src.utils.autograd import gradients_on
from src.utils.bounds import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
)
from src.utils.errors import UserError

Energy = Callable[[torch.Tensor], torch.Tensor]


def _device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    """Where random numbers come from: the generator's device, else that of `like`."""
    return generator.device if generator is not None else like.device


def uniform_noise(
    n: int,
    shape: Sequence[int],
    data_range: Sequence[float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """n points uniform on the box [lo, hi]^shape."""
    lo, hi = data_range
    u = torch.rand(n, *shape, generator=generator, device=generator.device if generator else device)
    return (lo + (hi - lo) * u).to(device)


class LangevinSampler(nn.Module):
    """`steps` Langevin updates of a batch under an energy, with gradient and range clamps.

    Works in validation and testing, under `torch.no_grad()` or inference mode: it turns
    gradients on for the chain (`src.utils.autograd`).
    """

    def __init__(
        self,
        steps: NonNegativeInt = 60,
        step_size: PositiveFloat = 10.0,
        noise: NonNegativeFloat | None = 0.005,
        grad_clamp: PositiveFloat | None = 0.03,
        data_range: Sequence[float] | None = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if steps < 0 or step_size <= 0 or (noise is not None and noise < 0):
            raise UserError(
                f"Langevin sampler: need steps >= 0, step_size > 0, noise >= 0 (or null for "
                f"sqrt(2 step_size)); got {steps}, {step_size}, {noise}."
            )
        if data_range is not None and not data_range[0] < data_range[1]:
            raise UserError(f"Langevin sampler: data_range={list(data_range)} needs lo < hi.")
        self.steps, self.step_size = steps, step_size
        self.noise = math.sqrt(2 * step_size) if noise is None else noise
        self.grad_clamp = grad_clamp
        self.data_range = None if data_range is None else tuple(float(v) for v in data_range)

    def forward(
        self,
        energy: Energy,
        x: torch.Tensor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The chain's end point after `steps` (default `self.steps`) updates from `x`, detached."""
        with gradients_on():
            x = x.detach().clone()
            for _ in range(self.steps if steps is None else steps):
                x.requires_grad_(True)
                (grad,) = torch.autograd.grad(energy(x).sum(), x)
                if self.grad_clamp is not None:
                    grad = grad.clamp(-self.grad_clamp, self.grad_clamp)
                n = torch.randn(x.shape, generator=generator, device=_device(generator, x))
                x = x.detach() - self.step_size * grad + self.noise * n.to(x.device)
                if self.data_range is not None:
                    x = x.clamp(*self.data_range)
        return x.detach()


class ReplayBuffer(nn.Module):
    """A fixed-size store of past chain end points, filled with uniform noise at the start.

    The points are a buffer of the module, so checkpoints keep them and a resumed run continues
    its chains.
    """

    def __init__(
        self,
        size: PositiveInt,
        shape: Sequence[int],
        data_range: Sequence[float],
        reinit_prob: Probability = 0.05,
    ) -> None:
        super().__init__()
        if size < 1 or not 0 <= reinit_prob <= 1:
            raise UserError(
                f"replay buffer: need size >= 1 and 0 <= reinit_prob <= 1; got {size}, "
                f"{reinit_prob}."
            )
        self.shape, self.data_range = tuple(shape), tuple(float(v) for v in data_range)
        self.reinit_prob = reinit_prob
        self.register_buffer("points", uniform_noise(size, self.shape, self.data_range))

    def __len__(self) -> int:
        return len(self.points)

    def draw(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(x, index, fresh)`: n chain starts, the buffer slots they came from, and which of them
        were re-initialised from noise (bool, (n,))."""
        device = _device(generator, self.points)
        index = torch.randint(len(self), (n,), generator=generator, device=device)
        fresh = torch.rand(n, generator=generator, device=device) < self.reinit_prob
        noise = uniform_noise(n, self.shape, self.data_range, generator, self.points.device)
        index, fresh = index.to(self.points.device), fresh.to(self.points.device)
        mask = fresh.view(-1, *([1] * len(self.shape)))
        return torch.where(mask, noise, self.points[index]), index, fresh

    def push(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """Store chain end points back at the slots they were drawn from."""
        self.points[index] = x.detach().to(self.points.dtype)
