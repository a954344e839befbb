"""What `NCEDensity`'s steps do with the maths: with a linear log-density G(x) = v . x + g and the
noise q = N(mean, noise_scale^2 cov) fitted by hand to the training split, the NCE loss
-mean log sigmoid(l(data)) - k mean log sigmoid(-l(noise)), l = G - log Z - log(k q), its logged
terms and the SGD step it makes on v, g and log Z are computed by hand from the data and the noise
points the step scored (everything the stub saw that is not data). The noise points follow q;
evaluation draws them afresh for every batch, the same on every run, and its grid measures are
recomputed by hand on the grid's cell midpoints."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from src.callbacks.toy_density import ToyDensityCallback
from src.data.toy_distributions import EightGaussians
from src.losses.nce import NCELoss
from src.models.nce_density import NCEDensity
from tests.stubs_b import (
    Affine,
    StepRecorder,
    ToyBatches,
    batch,
    evaluate,
    metrics,
    shared_rows,
    trainer,
)

V, G = (0.6, -0.9), 0.25
K, LOG_Z, NOISE_SCALE, GRID = 3, 0.4, 1.5, 20
MIX = torch.tensor([[2.0, 0.0], [0.75, 0.66]])  # data covariance about [[4, 1.5], [1.5, 1]]
SHIFT = torch.tensor([0.5, -1.0])


def _points(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) @ MIX.T + SHIFT


TRAIN = _points(400, seed=0)


def _noise_by_hand() -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the covariance (unbiased) times noise_scale^2 of the training split."""
    x = TRAIN.double()
    centred = x - x.mean(0)
    return x.mean(0), centred.T @ centred / (len(x) - 1) * NOISE_SCALE**2


def _log_q(x: torch.Tensor) -> torch.Tensor:
    mean, cov = _noise_by_hand()
    d = x.double() - mean
    mahalanobis = (d @ torch.linalg.inv(cov) * d).sum(-1)
    return -0.5 * mahalanobis - 0.5 * math.log(float(torch.linalg.det(2 * math.pi * cov)))


def _logit(x: torch.Tensor, v: torch.Tensor, g: float, log_z: float) -> torch.Tensor:
    return x.double() @ v.double() + g - log_z - _log_q(x) - math.log(K)


def nce(
    val: list[torch.Tensor], lr: float, epochs: int = 1
) -> tuple[NCEDensity, ToyBatches, Affine, dict[str, float], StepRecorder]:
    """The model fitted for `epochs` epochs on TRAIN as one batch, its data module, its stub G,
    the metrics the fit logged and the points G scored in each step."""
    model = NCEDensity(
        loss=NCELoss(noise_ratio=K, init_log_z=LOG_Z),
        optimizer=functools.partial(torch.optim.SGD, lr=lr),
        hidden=(),
        noise_scale=NOISE_SCALE,
    )
    stub = Affine(V, G, keepdim=True)
    model.net = stub
    data = ToyBatches(EightGaussians(), [batch(TRAIN)], [batch(x) for x in val])
    recorder = StepRecorder(stub)
    fit = trainer(limit_val_batches=0, max_epochs=epochs, callbacks=[recorder])
    fit.fit(model, datamodule=data)
    return model, data, stub, metrics(fit), recorder


def _split(scored: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """The scored points that are not data points: the noise."""
    is_data = (scored[:, None, :] == data[None, :, :]).all(-1).any(1)
    assert int(is_data.sum()) == len(data)
    return scored[~is_data]


def _nce(
    data: torch.Tensor, noise: torch.Tensor, v: torch.Tensor, g: float, log_z: float
) -> tuple[float, float, float, torch.Tensor, float]:
    """(loss, accuracy, d loss / d log Z, d loss / d v, d loss / d g) by hand."""
    l_data, l_noise = _logit(data, v, g, log_z), _logit(noise, v, g, log_z)
    loss = -torch.nn.functional.logsigmoid(l_data).mean()
    loss = loss - K * torch.nn.functional.logsigmoid(-l_noise).mean()
    correct = (l_data > 0).sum() + (l_noise < 0).sum()
    accuracy = float(correct) / (len(data) + len(noise))
    pull, push = torch.sigmoid(-l_data), torch.sigmoid(l_noise)  # dL/dl = -pull, +k push / kN
    d_v = -(pull[:, None] * data.double()).mean(0) + K * (push[:, None] * noise.double()).mean(0)
    d_g = float(-pull.mean() + K * push.mean())
    return float(loss), accuracy, -d_g, d_v, d_g


def _check_follows_q(noise: torch.Tensor) -> None:
    """Sample mean and covariance of >= 900 points within 4 standard errors of q's."""
    mean, cov = _noise_by_hand()
    torch.testing.assert_close(noise.double().mean(0), mean, atol=0.3, rtol=0)
    torch.testing.assert_close(torch.cov(noise.double().T), cov, rtol=0.2, atol=0.1)


def test_a_training_step_is_the_hand_computed_nce_step() -> None:
    """One step on the 400 training points: 1200 noise points from q, the loss, accuracy and the
    learned log Z (its value before the step) as logged, and one SGD step on v, g and log Z."""
    lr = 0.05
    model, _, stub, logged, recorder = nce([], lr)
    (scored,) = recorder.inputs
    noise = _split(torch.cat(scored), TRAIN)
    assert len(noise) == K * len(TRAIN)
    _check_follows_q(noise)

    v = torch.tensor(V)
    loss, accuracy, d_log_z, d_v, d_g = _nce(TRAIN, noise, v, G, LOG_Z)
    assert logged["train/loss"] == pytest.approx(loss, rel=1e-4)
    assert logged["train/nce_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert logged["train/log_z"] == pytest.approx(LOG_Z, rel=1e-6)
    assert model.loss.log_z.item() == pytest.approx(LOG_Z - lr * d_log_z, rel=1e-4)
    torch.testing.assert_close(stub.w.detach().double(), v.double() - lr * d_v, rtol=1e-4, atol=0)
    assert stub.c.item() == pytest.approx(G - lr * d_g, rel=1e-4)


def test_every_training_step_draws_fresh_noise() -> None:
    """Two steps on the same batch (two epochs): neither shares a noise point with the other."""
    *_, recorder = nce([], lr=0.0, epochs=2)
    first, second = (_split(torch.cat(points), TRAIN) for points in recorder.inputs)
    assert shared_rows(first, second) == 0


def _grid_by_hand(distribution: EightGaussians) -> dict[str, float]:
    lo, hi = distribution.bounds
    cell = (hi - lo) / GRID
    axis = lo + (torch.arange(GRID, dtype=torch.float64) + 0.5) * cell
    points = torch.cartesian_prod(axis, axis)
    log_g = points @ torch.tensor(V, dtype=torch.float64) + G
    log_p = torch.log_softmax(distribution.log_prob(points), 0)

    def kl(log_model: torch.Tensor) -> float:
        return float((log_p.exp() * (log_p - torch.log_softmax(log_model, 0))).sum())

    return {
        "log_z_grid": float(torch.logsumexp(log_g, 0)) + 2 * math.log(cell),
        "kl": kl(log_g),
        "kl_noise": kl(_log_q(points)),
    }


@pytest.mark.parametrize("stage", ["val", "test"])
def test_evaluation_scores_noise_of_its_own_for_each_batch(stage: str) -> None:
    """Batches of 300 and 100 points (k N noise points each, from q, different for the two and the
    same on a second run): the logged loss and accuracy are the hand-computed per-batch values
    averaged with the batch sizes as weights; log Z and the grid measures are as computed here."""
    batches = [_points(300, seed=1), _points(100, seed=2)]
    model, data, stub, *_ = nce(batches, lr=0.0)
    density = [ToyDensityCallback(grid_size=GRID)]
    logged, recorder = evaluate(model, stage, stub, datamodule=data, callbacks=density)
    noises = [
        _split(torch.cat(calls), x) for x, calls in zip(batches, recorder.inputs, strict=True)
    ]
    assert [len(n) for n in noises] == [K * 300, K * 100]
    _check_follows_q(noises[0])
    assert shared_rows(noises[0], noises[1]) == 0

    by_batch = [_nce(x, n, torch.tensor(V), G, LOG_Z) for x, n in zip(batches, noises, strict=True)]
    torch.testing.assert_close(
        torch.stack(recorder.outputs).double(),
        torch.tensor([b[0] for b in by_batch], dtype=torch.float64),
        rtol=1e-4,
        atol=0,
    )
    loss = (300 * by_batch[0][0] + 100 * by_batch[1][0]) / 400
    accuracy = (300 * by_batch[0][1] + 100 * by_batch[1][1]) / 400
    assert logged[f"{stage}/loss"] == pytest.approx(loss, rel=1e-4)
    assert logged[f"{stage}/nce_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert logged[f"{stage}/log_z"] == pytest.approx(LOG_Z, rel=1e-6)
    for name, value in _grid_by_hand(data.distribution).items():
        assert logged[f"{stage}/{name}"] == pytest.approx(value, rel=1e-4), name

    _, again = evaluate(model, stage, stub, datamodule=data)
    for calls, repeated in zip(recorder.inputs, again.inputs, strict=True):
        torch.testing.assert_close(torch.cat(calls), torch.cat(repeated), rtol=0, atol=0)
