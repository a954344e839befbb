"""Linear-chain conditional random field (kexue.fm/archives/5542).

For emissions h_t(k) (B, T, K), transitions g(i, j) = `transitions[i, j]` (tag i followed by
tag j) and, optionally, start/end scores:

    score(y) = start(y_1) + sum_t h_t(y_t) + sum_t g(y_t, y_{t+1}) + end(y_L)
    P(y | x) = exp(score(y)) / Z(x),      nll = log Z(x) - score(gold)

log Z comes from the forward recursion alpha_{t+1}(j) = logsumexp_i(alpha_t(i) + g(i, j)) +
h_{t+1}(j); decoding is Viterbi (the same recursion with max). With `start_end=False` there are no
start/end scores: the author's variant, transitions only.

Speed. The forward recursion runs in scaled exponential space, alpha_{t+1} = (alpha_t @ e^g) *
e^{h_{t+1}}, renormalised at every step (one small matmul instead of a (B, K, K) logsumexp), and
the gradient of log Z is not taped by autograd: it is the vector of marginals, from one backward
(beta) recursion of the same kind:

    d log Z / d h_t(k) = P(y_t = k),    d log Z / d g(i, j) = sum_t P(y_t = i, y_{t+1} = j).

When the scaled recursion under- or overflows (scores spread over more than ~80 nats) it falls
back to the plain log-space recursion, so the result is exact either way.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from src.utils.bounds import PositiveFloat, PositiveInt
from src.utils.tag_schemes import check_scheme

Reduction = Literal["mean", "sum", "token_mean", "none"]


def reduce_nll(nll: torch.Tensor, mask: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Per-sequence nll (B,) -> mean or sum over sequences, per token (`token_mean`), or none."""
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    if reduction == "mean":
        return nll.mean()
    if reduction == "token_mean":
        return nll.sum() / mask.sum()
    raise ValueError(f"reduction must be mean, sum, token_mean or none, got {reduction!r}")


class TransitionMask(NamedTuple):
    """Which tag may follow which (K, K), which may start (K,) and end (K,) a sequence."""

    transitions: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor


def allowed_transitions(tags: list[str], scheme: str) -> TransitionMask:
    """The transitions, first and last tags a well-formed sequence can have under `scheme` (BIO,
    BIOES, BMES; the grammar is `src.utils.tag_schemes`')."""
    scheme_rule = check_scheme(tags, scheme.upper())
    trans = [[scheme_rule.may_follow(a, b) for b in tags] for a in tags]
    return TransitionMask(
        torch.tensor(trans, dtype=torch.bool).reshape(len(tags), len(tags)),
        torch.tensor([scheme_rule.may_start(t) for t in tags], dtype=torch.bool),
        torch.tensor([scheme_rule.may_end(t) for t in tags], dtype=torch.bool),
    )


def _scaled_forward_backward(
    emissions: torch.Tensor,
    lengths: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    need_pairs: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """log Z (B,); and when asked, marginals (B, T, K) and summed pair marginals (B, K, K).

    Every alpha_t / beta_t is kept normalised to sum 1; the log of the normalisers adds up to
    log Z. Positions past a sequence's end are computed but never used.
    """
    batch, steps, k = emissions.shape
    h_max = emissions.amax(-1, keepdim=True)
    p = (emissions - h_max).exp().transpose(0, 1).contiguous()  # (T, B, K), max 1 per row
    g_max = transitions.max()
    e_g = (transitions - g_max).exp()
    e_start, e_end = (start - start.max()).exp(), (end - end.max()).exp()

    alpha = p[0] * e_start
    norm = alpha.sum(-1, keepdim=True)
    alphas, norms = [alpha / norm], [norm]
    for t in range(1, steps):
        alpha = (alphas[-1] @ e_g) * p[t]
        norm = alpha.sum(-1, keepdim=True)
        alphas.append(alpha / norm)
        norms.append(norm)
    alpha_hat = torch.stack(alphas)  # (T, B, K)
    valid = torch.arange(steps, device=lengths.device)[:, None] < lengths  # (T, B)
    last = (lengths - 1)[None, :, None].expand(1, batch, k)
    alpha_last = alpha_hat.gather(0, last)[0]  # (B, K)
    log_norms = torch.stack(norms)[..., 0].log() + h_max[..., 0].T
    log_z = (
        torch.where(valid, log_norms, 0.0).sum(0)
        + (lengths - 1) * g_max
        + start.max()
        + end.max()
        + (alpha_last @ e_end).log()
    )
    if not need_pairs:
        return log_z, None, None

    is_last = (torch.arange(steps, device=lengths.device)[:, None] == lengths - 1)[..., None]
    beta = e_end.expand(batch, k) / e_end.sum()
    betas, ws, vs = [beta], [], []
    for t in range(steps - 2, -1, -1):
        w = p[t + 1] * betas[-1]
        v = w @ e_g.T
        vs.append(v.sum(-1, keepdim=True))
        ws.append(w)
        betas.append(torch.where(is_last[t], beta, v / vs[-1]))
    beta_hat = torch.stack(betas[::-1])  # (T, B, K)
    marg = alpha_hat * beta_hat
    marg = torch.where(valid[..., None], marg / marg.sum(-1, keepdim=True), 0.0)
    if steps == 1:
        return log_z, marg.transpose(0, 1), emissions.new_zeros(batch, k, k)
    w_next = torch.stack(ws[::-1])  # (T-1, B, K): w_{t+1}
    v_sum = torch.stack(vs[::-1])  # (T-1, B, 1): |E @ w_{t+1}|_1
    # P(y_t = i, y_{t+1} = j) = alpha_t(i) e^g(i, j) w_{t+1}(j) / (alpha_t . E w_{t+1})
    z = v_sum * (alpha_hat[:-1] * beta_hat[:-1]).sum(-1, keepdim=True)
    pair_weight = torch.where(valid[1:, :, None], alpha_hat[:-1] / z, 0.0)
    pairs = torch.einsum("tbi,tbj->bij", pair_weight, w_next) * e_g
    return log_z, marg.transpose(0, 1), pairs


def _log_partition_logspace(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """The plain forward recursion in log space, differentiated by autograd: the fallback."""
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha[:, :, None] + transitions, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t, None], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


class _LogPartition(torch.autograd.Function):
    """log Z with the gradient from the marginals (see the module docstring)."""

    @staticmethod
    def forward(ctx, emissions, mask, transitions, start, end):  # type: ignore[override]
        lengths = mask.sum(1)
        log_z, _, _ = _scaled_forward_backward(
            emissions, lengths, transitions, start, end, need_pairs=False
        )
        ctx.save_for_backward(emissions, mask, transitions, start, end)
        return log_z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        emissions, mask, transitions, start, end = ctx.saved_tensors
        lengths = mask.sum(1)
        _, marg, pairs = _scaled_forward_backward(
            emissions, lengths, transitions, start, end, need_pairs=True
        )
        assert marg is not None and pairs is not None
        if not (torch.isfinite(marg).all() and torch.isfinite(pairs).all()):
            with torch.enable_grad():
                leaves = [x.detach().requires_grad_() for x in (emissions, transitions, start, end)]
                log_z = _log_partition_logspace(leaves[0], mask, *leaves[1:])
                grads = torch.autograd.grad(log_z, leaves, grad)
            return grads[0], None, grads[1], grads[2], grads[3]
        b = torch.arange(len(lengths), device=lengths.device)
        g = grad[:, None, None]
        return (
            marg * g,
            None,
            (pairs * g).sum(0),
            (marg[:, 0] * grad[:, None]).sum(0),
            (marg[b, lengths - 1] * grad[:, None]).sum(0),
        )


class CRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags; batch-first inputs, left-aligned masks.

    `transitions[i, j]` scores tag i followed by tag j; with `start_end` there are also
    `start_transitions` and `end_transitions` (as in pytorch-crf), without it the author's
    transitions-only model. `lr_multiplier` scales the learning rate of these parameters in the
    models that use it (the author needed about 100x the encoder's rate for the transitions).
    """

    def __init__(
        self, num_tags: PositiveInt, start_end: bool = True, lr_multiplier: PositiveFloat = 1.0
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags, self.start_end, self.lr_multiplier = num_tags, start_end, lr_multiplier
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        if start_end:
            self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
            self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, start_end={self.start_end}"

    def boundary_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) scores; zeros for the transitions-only variant."""
        if self.start_end:
            return self.start_transitions, self.end_transitions
        zeros = self.transitions.new_zeros(self.num_tags)
        return zeros, zeros

    def check(
        self, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor | None = None
    ) -> None:
        """ValueError naming the problem when the inputs do not fit the CRF."""
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(
                f"emissions must be (batch, time, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        if mask.shape != emissions.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(emissions.shape[:2])}, got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        if emissions.shape[1] == 0 or not bool(mask[:, 0].all()):
            raise ValueError("every sequence needs at least one position: a mask row has no True")
        lengths = mask.sum(1, keepdim=True)
        if not bool((mask == (torch.arange(mask.shape[1], device=mask.device) < lengths)).all()):
            raise ValueError("mask rows must be a run of True followed by padding (left-aligned)")
        if tags is None:
            return
        if tags.shape != mask.shape:
            raise ValueError(
                f"tags must have the mask's shape {tuple(mask.shape)}, got {tuple(tags.shape)}"
            )
        real = tags[mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.num_tags):
            raise ValueError(f"tags must lie in [0, {self.num_tags}) on unmasked positions")

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z(x) per sequence, (B,)."""
        self.check(emissions, mask)
        return self._log_partition(emissions, mask)

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emissions = self._float(emissions)
        start, end = self.boundary_scores()
        log_z = _LogPartition.apply(emissions, mask, self.transitions, start, end)
        if not bool(torch.isfinite(log_z).all()):
            log_z = _log_partition_logspace(emissions, mask, self.transitions, start, end)
        return log_z

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """score(y) of the given tag paths, (B,)."""
        emissions = self._float(emissions)
        tags = tags.masked_fill(~mask, 0)
        start, end = self.boundary_scores()
        emitted = emissions.gather(-1, tags[..., None])[..., 0]
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]
        last = tags.gather(1, mask.sum(1, keepdim=True) - 1)[:, 0]
        return (
            torch.where(mask, emitted, 0.0).sum(1)
            + torch.where(mask[:, 1:], moved, 0.0).sum(1)
            + start[tags[:, 0]]
            + end[last]
        )

    def nll(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """-log P(tags | x) = log Z - score(tags); mean/sum over sequences, per token, or none."""
        self.check(emissions, mask, tags)
        nll = self._log_partition(emissions, mask) - self.score(emissions, tags, mask)
        return reduce_nll(nll, mask, reduction)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(y_t = k | x), (B, T, K); zero rows at padding."""
        self.check(emissions, mask)
        emissions = self._float(emissions)
        start, end = self.boundary_scores()
        _, marg, _ = _scaled_forward_backward(
            emissions, mask.sum(1), self.transitions, start, end, need_pairs=True
        )
        assert marg is not None
        if torch.isfinite(marg).all():
            return marg
        with torch.enable_grad():
            leaf = emissions.detach().requires_grad_()
            log_z = _log_partition_logspace(leaf, mask, self.transitions.detach(), start, end)
            (marg,) = torch.autograd.grad(log_z.sum(), leaf)
        return marg

    @torch.no_grad()
    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        allowed: TransitionMask | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The best path argmax_y score(y) (Viterbi), (B, T) with -1 at padding.

        `allowed` restricts the paths: a (K, K) bool transition mask, or a `TransitionMask`
        with start/end masks too (see `allowed_transitions`).
        """
        self.check(emissions, mask)
        emissions = self._float(emissions)
        start, end = self.boundary_scores()
        transitions = self.transitions
        if allowed is not None:
            if isinstance(allowed, torch.Tensor):
                allowed = TransitionMask(
                    allowed,
                    torch.ones_like(start, dtype=torch.bool),
                    torch.ones_like(end, dtype=torch.bool),
                )
            forbid = float("-inf")
            transitions = transitions.masked_fill(~allowed.transitions.to(mask.device), forbid)
            start = start.masked_fill(~allowed.start.to(mask.device), forbid)
            end = end.masked_fill(~allowed.end.to(mask.device), forbid)
        em = emissions.transpose(0, 1)
        valid = mask.T.contiguous()  # (T, B)
        incoming = transitions.T.contiguous()  # [j, i]: reduce over the last, contiguous dim
        score = start + em[0]
        scores = [score]
        for t in range(1, em.shape[0]):
            best = (score[:, None, :] + incoming).amax(-1)  # values only: 3x faster than max
            score = torch.where(valid[t, :, None], best + em[t], score)
            scores.append(score)
        # back-pointers are recomputed for the chosen tag only: an argmax over K, not K x K
        tag = (score + end).argmax(-1)  # each sequence's last tag (scores carry past the end)
        path = [tag]
        for t in range(em.shape[0] - 1, 0, -1):
            came_from = (scores[t - 1] + incoming[tag]).argmax(-1)
            tag = torch.where(valid[t], came_from, tag)
            path.append(tag)
        return torch.stack(path[::-1], 1).masked_fill(~mask, -1)

    @staticmethod
    def _float(emissions: torch.Tensor) -> torch.Tensor:
        return emissions if emissions.dtype == torch.float64 else emissions.float()
