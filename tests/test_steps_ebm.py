"""What `EBM`'s steps do with the maths: with a linear energy E(x) = w . x + c and noiseless
Langevin chains, a chain of k steps from x ends at x - k step w, so every row of the replay buffer
that a training step drew can be recognised afterwards (the rows are distinct points of a large
buffer): it holds its own chain's end point, or a re-initialised chain's, and every other row is
untouched. The contrastive-divergence loss, its logged terms and the SGD step it makes are
computed by hand from the data and those end points; evaluation reports the energies of the
held-out batches and of a seeded draw of buffer rows without changing the buffer; `sample` runs
`sample_steps` from uniform noise on the data range."""

from __future__ import annotations

import functools

import pytest
import torch

from src.losses.contrastive_divergence import ContrastiveDivergence
from src.models.components.langevin import LangevinSampler
from src.models.ebm import EBM
from tests.stubs_b import Affine, batch, evaluate, loader, metrics, trainer

W, C = (0.7, -0.4, 0.25), 0.2
STEPS, STEP_SIZE, SAMPLE_STEPS = 4, 0.05, 7
BOX = (-4.0, 4.0)
ALPHA, LR = 0.3, 0.1
BUFFER = 100_000  # 16 draws from it repeat a row with probability 1e-3: this seed has none


def ebm(energy: Affine, reinit_prob: float = 0.0, eval_seed: int = 0) -> EBM:
    sampler = LangevinSampler(STEPS, STEP_SIZE, noise=0.0, grad_clamp=None, data_range=BOX)
    return EBM(
        net=lambda data_shape: energy,
        sampler=sampler,
        loss=ContrastiveDivergence(alpha=ALPHA),
        optimizer=functools.partial(torch.optim.SGD, lr=LR),
        data_shape=(3,),
        buffer_size=BUFFER,
        reinit_prob=reinit_prob,
        data_noise=0.0,
        sample_steps=SAMPLE_STEPS,
        n_image_samples=4,
        eval_seed=eval_seed,
    )


def _points(n: int, seed: int, spread: float = 2.0) -> torch.Tensor:
    return (torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * spread


def _energy(x: torch.Tensor) -> torch.Tensor:
    return x @ torch.tensor(W) + C


@pytest.mark.parametrize("reinit_prob", [0.0, 0.5, 1.0])
def test_a_training_step_updates_exactly_the_drawn_buffer_rows(reinit_prob: float) -> None:
    """16 chains: 16 rows change, each to the end of a chain from itself (x - 4 * 0.05 w) or, for
    the re-initialised share `train/fresh`, from noise; the loss is CD on the data and the changed
    rows, and SGD moves w by -lr (mean x+ - mean x- + 2 alpha (mean E+ x+ + mean E- x-)) and c by
    -lr 2 alpha (mean E+ + mean E-)."""
    energy = Affine(W, C)
    model = ebm(energy, reinit_prob)
    rows = _points(BUFFER, seed=1)
    model.buffer.points.copy_(rows)
    real = _points(16, seed=2) + torch.tensor([1.0, 0.0, -0.5])
    torch.manual_seed(0)
    fit = trainer()
    fit.fit(model, train_dataloaders=loader([batch(real)]))

    after = model.buffer.points
    changed = (after != rows).any(1)
    assert int(changed.sum()) == 16
    new = after[changed]
    own_chain = rows[changed] - STEPS * STEP_SIZE * torch.tensor(W)
    continued = torch.isclose(new, own_chain, atol=1e-6).all(1)
    fresh = 1 - continued.float().mean()
    assert ((new >= BOX[0]) & (new <= BOX[1])).all()
    logged = metrics(fit)
    assert logged["train/fresh"] == pytest.approx(float(fresh))
    if reinit_prob == 0.0:
        assert fresh == 0
    elif reinit_prob == 1.0:
        assert fresh == 1
    else:
        assert 0 < fresh < 1
    if reinit_prob == 1.0:  # restarts from noise on the whole box, beyond the rows' (-2, 2)
        assert new.abs().max() > 2.5

    e_real, e_fake = _energy(real), _energy(new)
    reg = ALPHA * (e_real.square().mean() + e_fake.square().mean())
    assert logged["train/e_real"] == pytest.approx(float(e_real.mean()), rel=1e-5)
    assert logged["train/e_fake"] == pytest.approx(float(e_fake.mean()), rel=1e-5)
    assert logged["train/cd"] == pytest.approx(float(e_real.mean() - e_fake.mean()), rel=1e-5)
    assert logged["train/reg"] == pytest.approx(float(reg), rel=1e-5)
    loss = e_real.mean() - e_fake.mean() + reg
    assert logged["train/loss"] == pytest.approx(float(loss), rel=1e-5)

    grad_w = real.mean(0) - new.mean(0)
    grad_w += 2 * ALPHA * ((e_real[:, None] * real).mean(0) + (e_fake[:, None] * new).mean(0))
    grad_c = 2 * ALPHA * (e_real.mean() + e_fake.mean())
    torch.testing.assert_close(energy.w.detach(), torch.tensor(W) - LR * grad_w)
    torch.testing.assert_close(energy.c.detach(), C - LR * grad_c)


def _validate(model: EBM, batches: list[torch.Tensor], stage: str = "val") -> dict[str, float]:
    return evaluate(model, stage, model.energy, batches)[0]


@pytest.mark.parametrize("stage", ["val", "test"])
def test_evaluation_reports_held_out_and_buffer_energies_without_touching_the_buffer(
    stage: str,
) -> None:
    """Buffer rows all at energy 1.5 (w . x = 1.3 plus orthogonal spread): the buffer's mean
    energy is 1.5 whichever rows are drawn; the data's is the mean over all held-out batches of
    this evaluation only, and the loss is CD on the two."""
    energy = Affine(W, C)
    model = ebm(energy)
    w = torch.tensor(W)
    spread = _points(BUFFER, seed=3)
    rows = spread - (spread @ w)[:, None] * w / (w @ w) + 1.3 * w / (w @ w)
    model.buffer.points.copy_(rows)
    first = [_points(5, seed=4), _points(3, seed=5) + 1.0]
    logged = _validate(model, first, stage)

    e_real = _energy(torch.cat(first))
    e_fake = 1.5
    reg = ALPHA * (e_real.square().mean() + e_fake**2)
    assert logged[f"{stage}/e_real"] == pytest.approx(float(e_real.mean()), rel=1e-5)
    assert logged[f"{stage}/e_fake"] == pytest.approx(e_fake, rel=1e-5)
    assert logged[f"{stage}/reg"] == pytest.approx(float(reg), rel=1e-5)
    loss = e_real.mean() - e_fake + reg
    assert logged[f"{stage}/loss"] == pytest.approx(float(loss), rel=1e-5)
    assert torch.equal(model.buffer.points, rows)
    torch.testing.assert_close(energy.w.detach(), w, rtol=0, atol=0)

    second = [_points(4, seed=6) - 1.0]
    again = _validate(model, second, stage)
    expected = float(_energy(second[0]).mean())
    assert again[f"{stage}/e_real"] == pytest.approx(expected, rel=1e-5)


def test_evaluation_draws_the_same_buffer_rows_every_time() -> None:
    """Rows of different energies: the buffer's mean energy is the same on every evaluation (a
    seeded draw), another evaluation seed draws other rows, and neither run moves a row."""
    model = ebm(Affine(W, C))
    rows = _points(BUFFER, seed=7)
    model.buffer.points.copy_(rows)
    data = [_points(6, seed=8)]
    first, second = _validate(model, data), _validate(model, data)
    assert first["val/e_fake"] == second["val/e_fake"]
    other = ebm(Affine(W, C), eval_seed=1)
    other.buffer.points.copy_(rows)
    assert _validate(other, data)["val/e_fake"] != pytest.approx(first["val/e_fake"], abs=1e-3)
    assert torch.equal(model.buffer.points, rows) and torch.equal(other.buffer.points, rows)


def test_sample_runs_sample_steps_from_uniform_noise_on_the_data_range() -> None:
    """Noiseless chains under a linear energy: `sample` moves each uniform start by
    -sample_steps * step w (clamped to the box), `steps` overrides the number, and the buffer
    plays no part."""
    model = ebm(Affine(W, C))
    model.buffer.points.fill_(0.5)
    starts = model.sample(2000, torch.Generator().manual_seed(9), steps=0)
    assert starts.min() < BOX[0] + 0.1 and starts.max() > BOX[1] - 0.1
    assert ((starts >= BOX[0]) & (starts <= BOX[1])).all()
    samples = model.sample(2000, torch.Generator().manual_seed(9))
    expected = (starts - SAMPLE_STEPS * STEP_SIZE * torch.tensor(W)).clamp(*BOX)
    torch.testing.assert_close(samples, expected)
