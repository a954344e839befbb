"""The CRF against brute-force enumeration of all K^T paths, against pytorch-crf, and gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchcrf import CRF as ReferenceCRF

from src.models.components.crf import (
    CRF,
    TransitionMask,
    _log_partition_logspace,
    _LogPartition,
    allowed_transitions,
)
from src.utils.errors import UserError


def random_inputs(
    batch: int, steps: int, k: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emissions, tags and a mask with every length from 1 to `steps` represented."""
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, steps, k, generator=gen, dtype=dtype) * 2
    lengths = torch.arange(batch) % steps + 1
    mask = torch.arange(steps) < lengths[:, None]
    tags = torch.randint(0, k, (batch, steps), generator=gen)
    return emissions, tags, mask


def make_crf(k: int, start_end: bool, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(k, start_end=start_end).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1.5)
    return crf


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[torch.Tensor, ...]:
    """All paths of one sequence: (scores (K^L,), paths (K^L, L))."""
    k = crf.num_tags
    paths = torch.tensor(list(itertools.product(range(k), repeat=length)))
    start, end = crf.boundary_scores()
    scores = emissions[torch.arange(length), paths].sum(1)
    scores = scores + crf.transitions[paths[:, :-1], paths[:, 1:]].sum(1)
    return scores + start[paths[:, 0]] + end[paths[:, -1]], paths


@pytest.mark.parametrize("start_end", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_log_partition_decode_marginals_equal_brute_force(start_end: bool, k: int) -> None:
    steps = 5
    crf = make_crf(k, start_end, seed=k)
    emissions, _, mask = random_inputs(10, steps, k, seed=k)
    log_z = crf.log_partition(emissions, mask)
    best = crf.decode(emissions, mask)
    marg = crf.marginals(emissions, mask)
    for b in range(len(emissions)):
        length = int(mask[b].sum())
        with torch.no_grad():
            scores, paths = brute_force(crf, emissions[b], length)
        torch.testing.assert_close(log_z[b], scores.logsumexp(0), rtol=1e-10, atol=1e-10)
        assert best[b, :length].tolist() == paths[scores.argmax()].tolist()
        assert (best[b, length:] == -1).all()
        probs = (scores - scores.logsumexp(0)).exp()
        expected = torch.zeros(steps, k, dtype=probs.dtype)
        for t in range(length):
            expected[t] = torch.zeros(k, dtype=probs.dtype).index_add(0, paths[:, t], probs)
        torch.testing.assert_close(marg[b], expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(marg[b, :length].sum(-1), torch.ones(length).double())


def test_gradcheck_float64() -> None:
    """The hand-written backward (marginals) against finite differences, padding included."""
    emissions, _, mask = random_inputs(4, 4, 3, seed=1)
    gen = torch.Generator().manual_seed(2)
    params = [
        torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in [(3, 3), (3,), (3,)]
    ]
    inputs = [x.requires_grad_() for x in (emissions, *params)]
    assert torch.autograd.gradcheck(
        lambda e, g, s, n: _LogPartition.apply(e, mask, g, s, n), inputs
    )


@pytest.mark.parametrize("start_end", [True, False])
def test_gradient_of_nll_equals_autograd_of_logspace(start_end: bool) -> None:
    crf = make_crf(4, start_end, seed=2)
    emissions, tags, mask = random_inputs(6, 7, 4, seed=3)
    emissions.requires_grad_()
    crf.nll(emissions, tags, mask, reduction="sum").backward()
    fast = [emissions.grad, *(p.grad for p in crf.parameters())]
    emissions.grad = None
    crf.zero_grad()
    start, end = crf.boundary_scores()
    log_z = _log_partition_logspace(emissions, mask, crf.transitions, start, end)
    (log_z - crf.score(emissions, tags, mask)).sum().backward()
    slow = [emissions.grad, *(p.grad for p in crf.parameters())]
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "token_mean"])
def test_agrees_with_pytorch_crf(reduction: str) -> None:
    torch.manual_seed(0)
    k = 5
    ours, reference = CRF(k), ReferenceCRF(k, batch_first=True)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(ours, name).normal_(0, 1)
            getattr(reference, name).copy_(getattr(ours, name))
    emissions, tags, mask = random_inputs(16, 12, k, seed=4, dtype=torch.float32)
    e1, e2 = emissions.clone().requires_grad_(), emissions.clone().requires_grad_()
    nll = ours.nll(e1, tags, mask, reduction=reduction)
    expected = -reference(e2, tags, mask, reduction=reduction)
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-5)
    nll.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-5, atol=1e-5)
    for name in ("transitions", "start_transitions", "end_transitions"):
        grads = getattr(ours, name).grad, getattr(reference, name).grad
        torch.testing.assert_close(*grads, rtol=1e-5, atol=1e-5)
    decoded = ours.decode(emissions, mask)
    for row, path in zip(decoded, reference.decode(emissions, mask), strict=True):
        assert row[row >= 0].tolist() == path


def test_extreme_scores_fall_back_to_log_space() -> None:
    """Emissions 300 nats apart underflow the scaled recursion; the result stays exact."""
    crf = make_crf(3, True, seed=5)
    emissions, _, mask = random_inputs(6, 5, 3, seed=6)
    emissions = (emissions * 150).requires_grad_()
    log_z = crf.log_partition(emissions, mask)
    assert torch.isfinite(log_z).all()
    for b in range(len(emissions)):
        with torch.no_grad():
            scores, _ = brute_force(crf, emissions[b], int(mask[b].sum()))
        torch.testing.assert_close(log_z[b], scores.logsumexp(0))
    log_z.sum().backward()
    assert torch.isfinite(emissions.grad).all()
    marg = crf.marginals(emissions, mask)
    torch.testing.assert_close(marg.sum(-1), mask.double())


def test_float32_long_sequences_match_log_space() -> None:
    crf = CRF(9)
    emissions, _, mask = random_inputs(8, 256, 9, seed=7, dtype=torch.float32)
    start, end = crf.boundary_scores()
    fast = crf.log_partition(emissions, mask)
    slow = _log_partition_logspace(
        emissions.double(), mask, *(x.double() for x in (crf.transitions, start, end))
    )
    torch.testing.assert_close(fast.double(), slow, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    ("scheme", "tags"),
    [
        ("BIO", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
        ("BIOES", ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]),
        ("BMES", ["B", "M", "E", "S"]),
    ],
)
def test_constrained_decoding_never_breaks_the_scheme(scheme: str, tags: list[str]) -> None:
    allowed = allowed_transitions(tags, scheme)
    crf = make_crf(len(tags), True, seed=8)
    emissions, _, mask = random_inputs(200, 9, len(tags), seed=9)
    emissions = emissions * 3
    paths = crf.decode(emissions, mask, allowed)
    for b, path in enumerate(paths):
        real = path[mask[b]].tolist()
        assert allowed.start[real[0]] and allowed.end[real[-1]]
        assert all(allowed.transitions[i, j] for i, j in itertools.pairwise(real))
        # the constrained best path is the brute-force best among the allowed ones
        if b < 40 and len(tags) ** len(real) <= 100_000:
            with torch.no_grad():
                scores, all_paths = brute_force(crf, emissions[b], len(real))
            ok = allowed.start[all_paths[:, 0]] & allowed.end[all_paths[:, -1]]
            ok &= allowed.transitions[all_paths[:, :-1], all_paths[:, 1:]].all(1)
            best = all_paths[scores.masked_fill(~ok, float("-inf")).argmax()]
            assert real == best.tolist()


def test_allowed_transitions_by_hand() -> None:
    bmes = allowed_transitions(["B", "M", "E", "S"], "BMES")
    expected = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1]]).bool()
    assert torch.equal(bmes.transitions, expected)
    assert bmes.start.tolist() == [True, False, False, True]
    assert bmes.end.tolist() == [False, False, True, True]
    bio = allowed_transitions(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO")
    assert bio.transitions[:, 2].tolist() == [False, True, True, False, False]
    assert bio.end.all() and bio.start.tolist() == [True, True, False, True, False]
    assert isinstance(bio, TransitionMask)
    with pytest.raises(UserError, match="'O' do not belong to the BMES scheme"):
        allowed_transitions(["O", "B", "M"], "BMES")
    with pytest.raises(UserError, match="tag scheme 'XYZ' is unknown"):
        allowed_transitions(["O"], "XYZ")


def test_bad_inputs_raise_clear_errors() -> None:
    crf = CRF(3)
    emissions, tags, mask = random_inputs(2, 4, 3, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="left-aligned"):
        crf.nll(emissions, tags, torch.tensor([[True, False, True, False]] * 2))
    with pytest.raises(ValueError, match="no True"):
        crf.decode(emissions, torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ValueError, match=r"tags must lie in \[0, 3\)"):
        crf.nll(emissions, tags + 3, mask)
    with pytest.raises(ValueError, match="emissions must be"):
        crf.log_partition(emissions[..., :2], mask)
    with pytest.raises(ValueError, match="mask must be a bool"):
        crf.log_partition(emissions, mask.long())
    with pytest.raises(ValueError, match="tags must have"):
        crf.nll(emissions, tags[:, :3], mask)
    with pytest.raises(ValueError, match="reduction"):
        crf.nll(emissions, tags, mask, reduction="avg")  # type: ignore[arg-type]


def test_one_step_sequences_have_the_softmax_as_marginals_and_gradient() -> None:
    """T = 1: log Z = logsumexp(h + start + end), so P(y) and -d nll / d h are closed forms."""
    torch.manual_seed(0)
    crf = CRF(4)
    h = torch.randn(3, 1, 4, requires_grad=True)
    tags = torch.tensor([[0], [2], [3]])
    mask = torch.ones(3, 1, dtype=torch.bool)
    ends = crf.start_transitions.detach() + crf.end_transitions.detach()
    p = torch.softmax(h.detach() + ends, -1)
    torch.testing.assert_close(crf.marginals(h.detach(), mask), p)
    crf.nll(h, tags, mask, reduction="sum").backward()
    torch.testing.assert_close(h.grad, p - torch.nn.functional.one_hot(tags, 4).float())
