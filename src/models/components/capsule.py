"""Capsules and routing by agreement (kexue.fm/archives/4819, 5112; Sabour et al. 2017).

A capsule is a vector: its length is the probability that an entity is present, its direction
the entity's pose.

    squash(s) = |s|^2 / (c + |s|^2) * s / |s|        (c = 1; the author's variant c = 0.5)

Dynamic routing from input capsules u_i to output capsules v_j, r iterations:

    u_hat_{j|i} = W_ij u_i            (Sabour: one matrix per pair; shared: W_j for every i)
    b_ij = 0
    repeat:  c_ij = softmax_j(b_ij)   (over OUTPUT capsules: each input splits its vote)
             s_j  = sum_i c_ij u_hat_{j|i}
             v_j  = squash(s_j);      b_ij += u_hat_{j|i} . v_j

The author's revised routing (4819, read as clustering in 5112) normalises inside the iterations,
b_ij = u_hat_{j|i} . s_j / |s_j|, and squashes only the final output. Shared weights W_j make the
layer accept any number of input capsules, so a net trained on 28x28 images runs on 56x28 ones.
"""

from __future__ import annotations

import torch
from torch import nn

from src.utils.bounds import PositiveFloat, PositiveInt


def squash(
    s: torch.Tensor, dim: int = -1, constant: float = 1.0, eps: float = 1e-8
) -> torch.Tensor:
    """|s|^2 / (constant + |s|^2) * s / |s|: the direction of s, a length below 1."""
    sq_norm = (s * s).sum(dim, keepdim=True)
    return s * (sq_norm / (constant + sq_norm)) / (sq_norm + eps).sqrt()


class PrimaryCapsules(nn.Module):
    """Capsules from a conv feature map (B, C, H, W) -> (B, N, capsule_dim).

    With `kernel_size` a convolution makes `n_maps` maps of `capsule_dim`-d capsules at every
    position (Sabour: 32 maps x 8-d, 9x9, stride 2), squashed. Without it every position of the
    map is one C-d capsule as it stands (the author's small net: 128-d capsules).
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        capsule_dim: PositiveInt = 8,
        n_maps: PositiveInt = 32,
        kernel_size: PositiveInt | None = 9,
        stride: PositiveInt = 2,
        squash_constant: PositiveFloat = 1.0,
    ) -> None:
        super().__init__()
        self.conv = (
            nn.Conv2d(in_channels, n_maps * capsule_dim, kernel_size, stride)
            if kernel_size
            else None
        )
        self.capsule_dim = capsule_dim if kernel_size else in_channels
        self.squash_constant = squash_constant
        self.grid: tuple[int, int] | None = None  # (h, w) of the capsule map last seen

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            self.grid = (features.shape[-2], features.shape[-1])
            return features.flatten(2).transpose(1, 2)  # (B, H*W, C)
        x = self.conv(features)  # (B, maps * D, H, W)
        b, _, h, w = x.shape
        self.grid = (h, w)
        x = x.view(b, -1, self.capsule_dim, h * w).permute(0, 1, 3, 2)  # (B, maps, H*W, D)
        return squash(x.reshape(b, -1, self.capsule_dim), constant=self.squash_constant)


class Routing(nn.Module):
    """Routing-by-agreement layer: (B, N, in_dim) -> (B, out_caps, out_dim).

    `shared_weights`: one W_j per output capsule (any N); else one W_ij per input capsule and
    output capsule (N fixed at `in_caps`). `revised`: the author's routing (normalise inside,
    squash at the output only). `detach_iterations`: no gradient through the routing logits of
    the intermediate iterations (the coupling coefficients act as constants).
    """

    def __init__(
        self,
        in_dim: PositiveInt,
        out_caps: PositiveInt,
        out_dim: PositiveInt,
        iterations: PositiveInt = 3,
        shared_weights: bool = True,
        in_caps: PositiveInt | None = None,
        revised: bool = False,
        squash_constant: PositiveFloat = 1.0,
        detach_iterations: bool = False,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"routing needs at least one iteration, got {iterations}")
        if not shared_weights and not in_caps:
            raise ValueError("per-input weights (shared_weights=False) need in_caps")
        shape = (
            (out_caps, in_dim, out_dim) if shared_weights else (in_caps, out_caps, in_dim, out_dim)
        )
        # small votes at the start: s_j sums hundreds of them, and unit-variance votes would make
        # every capsule's length ~1 at once, where squash passes almost no gradient
        self.weight = nn.Parameter(torch.randn(*shape) * 0.1 / in_dim**0.5)
        self.in_caps, self.out_caps, self.shared_weights = in_caps, out_caps, shared_weights
        self.iterations, self.revised = iterations, revised
        self.squash_constant, self.detach_iterations = squash_constant, detach_iterations
        self.last_coupling: torch.Tensor | None = None

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """u_hat_{j|i} = W_ij u_i, (B, N, out_caps, out_dim)."""
        if self.shared_weights:
            return torch.einsum("bni,jio->bnjo", u, self.weight)
        if u.shape[1] != self.in_caps:
            raise ValueError(
                f"this routing layer has per-input weights for {self.in_caps} input capsules, "
                f"got {u.shape[1]}: use shared_weights=True for other input sizes"
            )
        return torch.einsum("bni,njio->bnjo", u, self.weight)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u_hat = self.predictions(u)
        votes = u_hat.detach() if self.detach_iterations else u_hat
        logits = u.new_zeros(u_hat.shape[:3])  # b_ij, (B, N, out_caps)
        for _ in range(self.iterations - 1):
            s = torch.einsum("bnj,bnjo->bjo", logits.softmax(-1), votes)
            if self.revised:
                direction = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-8)
                logits = torch.einsum("bnjo,bjo->bnj", votes, direction)
            else:
                v = squash(s, constant=self.squash_constant)
                logits = logits + torch.einsum("bnjo,bjo->bnj", votes, v)
        coupling = logits.softmax(-1)  # c_ij: softmax over OUTPUT capsules j
        self.last_coupling = coupling.detach()
        return squash(torch.einsum("bnj,bnjo->bjo", coupling, u_hat), constant=self.squash_constant)
