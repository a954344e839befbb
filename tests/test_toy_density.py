"""The toy_density callback (src/callbacks/toy_density.py) on models with stub networks: what it
logs is recomputed here on the grid's cell midpoints and from the samples it must have drawn, and
its figures hold the model's own values; it refuses what it cannot measure in one line."""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

import src.callbacks.toy_density
from src.callbacks.toy_density import ToyDensityCallback
from src.data.toy_distributions import EightGaussians
from src.losses.contrastive_divergence import MEGLoss
from src.losses.gradient_penalty import WassersteinGP
from src.losses.nce import NCELoss
from src.metrics.toy2d import kl_on_grid, mmd, mode_coverage
from src.models.ebm_generator import EBMGenerator
from src.models.nce_density import NCEDensity
from src.models.wgan_gp import WGANGP
from src.utils.errors import UserError
from tests.stubs_b import Affine, ToyBatches, batch, trainer
from tests.test_model_figures import (
    GRID,
    VAL,
    C,
    Sent,
    W,
    _ebm,
    _grid_energy,
    _image_of,
    _softmax,
    _toy,
    _wgan_parts,
)

NOISE_SEED = 999_999


def _run(model: Any, tmp_path, callback: ToyDensityCallback, data: Any, stage: str = "val"):
    """The metrics of one validation (or test) with the callback and a TensorBoard logger."""
    run = trainer(logger=TensorBoardLogger(str(tmp_path)), callbacks=[callback])
    (run.validate if stage == "val" else run.test)(model, datamodule=data, verbose=False)
    return {k: float(v) for k, v in run.callback_metrics.items()}


def _true_grid(distribution: EightGaussians, n: int = GRID) -> torch.Tensor:
    lo, hi = distribution.bounds
    axis = lo + (torch.arange(n, dtype=torch.float64) + 0.5) * ((hi - lo) / n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return distribution.log_prob(torch.stack([xx, yy], -1))


def _kl_by_hand(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    p = torch.softmax(log_p.flatten().double(), 0)
    lq = torch.log_softmax(log_q.flatten().double(), 0)
    return float((p * (p.log() - lq)).sum())


@pytest.mark.parametrize("stage", ["val", "test"])
def test_an_ebm_gets_the_grid_kl_its_split_and_log_z_of_exp_minus_e(
    monkeypatch: pytest.MonkeyPatch, tmp_path, stage: str
) -> None:
    sent = Sent(monkeypatch, src.callbacks.toy_density)
    model, data = _ebm((2,), Affine(W, C)), _toy(VAL)
    logged = _run(model, tmp_path, ToyDensityCallback(GRID, n_samples=0), data, stage)
    distribution = data.distribution
    log_p = _true_grid(distribution)
    minus_e = -_grid_energy(W, C, distribution.bounds).reshape(GRID, GRID).double()
    assert logged[f"{stage}/kl"] == pytest.approx(_kl_by_hand(log_p, minus_e), rel=1e-6)
    split = sum(logged[f"{stage}/kl_{part}"] for part in ("mass", "shares", "within"))
    assert split == pytest.approx(logged[f"{stage}/kl"], rel=1e-6)
    lo, hi = distribution.bounds
    log_z = float(minus_e.logsumexp((0, 1))) + 2 * math.log((hi - lo) / GRID)
    assert logged[f"{stage}/log_z_grid"] == pytest.approx(log_z, rel=1e-6)
    assert f"{stage}/mmd" not in logged  # n_samples=0: no sample measures
    figure = sent.figures[f"{stage}/density"]
    np.testing.assert_allclose(_image_of(figure, 0), _softmax(log_p), rtol=1e-6)
    np.testing.assert_allclose(_image_of(figure, 1), _softmax(minus_e), rtol=1e-5)
    assert figure.axes[1].get_title().startswith("EBM, KL(true || model) = ")
    (shown,) = figure.axes[2].collections
    chains = model.sample(1000, torch.Generator().manual_seed(NOISE_SEED))
    torch.testing.assert_close(torch.as_tensor(np.asarray(shown.get_offsets())).float(), chains)


def test_a_generator_gets_mmd_and_modes_and_its_critic_contour(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.toy_density)
    model, data = WGANGP(loss=WassersteinGP(lam=1.0), **_wgan_parts()), _toy(VAL)
    logged = _run(model, tmp_path, ToyDensityCallback(GRID, n_samples=2500, seed=3), data)
    distribution = data.distribution
    truth, _ = distribution.sample(2000, torch.Generator().manual_seed(3))
    samples = model.sample(2500, torch.Generator().manual_seed(NOISE_SEED))
    assert logged["val/mmd"] == pytest.approx(mmd(samples[:2000], truth), rel=1e-6)
    modes = mode_coverage(samples, distribution.modes, distribution.scale)
    for name, value in modes.items():
        assert logged[f"val/{name}"] == pytest.approx(value, rel=1e-6), name
    assert "val/kl" not in logged and "val/density" not in sent.figures  # no log_density
    ax = sent.figures["val/critic_contour"].axes[0]
    assert ax.get_title() == "critic D(x), samples"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["real", "generated"]
    real, fake = (torch.as_tensor(np.asarray(c.get_offsets())) for c in ax.collections[1:])
    torch.testing.assert_close(real.float(), truth[:1000].float())
    torch.testing.assert_close(fake.float(), samples[:1000].float())
    lo, hi = distribution.bounds
    corners = torch.tensor([[lo, lo], [hi, lo], [lo, hi], [hi, hi]])
    d = corners @ torch.tensor(W) + C
    levels = ax.collections[0].levels
    assert levels[0] <= float(d.min()) + 1e-6 and levels[-1] >= float(d.max()) - 1e-6
    assert levels[-1] - levels[0] < 1.5 * float(d.max() - d.min())


def test_the_generator_model_gets_both_and_shows_exp_minus_e_with_its_samples(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.toy_density)
    model = EBMGenerator(statistics=torch.nn.Linear(1, 1), loss=MEGLoss(lam=0.1), **_wgan_parts())
    data = _toy(VAL)
    logged = _run(model, tmp_path, ToyDensityCallback(GRID, n_samples=500), data)
    critic = _grid_energy(W, C, data.distribution.bounds).reshape(GRID, GRID)  # -E = D
    assert logged["val/kl"] == pytest.approx(
        _kl_by_hand(_true_grid(data.distribution), critic), rel=1e-6
    )
    assert "val/mmd" in logged and "val/modes_covered" in logged
    figure = sent.figures["val/density"]
    np.testing.assert_allclose(_image_of(figure, 1), _softmax(critic), rtol=1e-5)
    assert figure.axes[1].get_title().startswith("EBMGenerator, KL(true || model) = ")
    (generated,) = figure.axes[2].collections
    expected = model.sample(1000, torch.Generator().manual_seed(NOISE_SEED))
    torch.testing.assert_close(
        torch.as_tensor(np.asarray(generated.get_offsets())).float(), expected
    )
    assert "val/critic_contour" in sent.figures


def test_nce_gets_the_kl_of_its_noise_beside_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.toy_density)
    model = NCEDensity(
        loss=NCELoss(noise_ratio=2, init_log_z=0.0),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        hidden=(),
        noise_scale=1.5,
    )
    model.net = Affine(W, C, keepdim=True)
    model.noise_loc.copy_(torch.tensor([0.5, -0.5]))
    model.noise_scale_tril.copy_(torch.tensor([[1.5, 0.0], [0.3, 1.2]]))
    data = _toy(VAL)
    logged = _run(model, tmp_path, ToyDensityCallback(GRID), data)
    log_p = _true_grid(data.distribution)
    lo, hi = data.distribution.bounds
    axis = lo + (torch.arange(GRID, dtype=torch.float64) + 0.5) * ((hi - lo) / GRID)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    log_q = model.noise().log_prob(torch.stack([xx, yy], -1).float())
    assert logged["val/kl_noise"] == pytest.approx(_kl_by_hand(log_p, log_q), rel=1e-5)
    g = _grid_energy(W, C, data.distribution.bounds).reshape(GRID, GRID)
    assert logged["val/kl"] == pytest.approx(_kl_by_hand(log_p, g), rel=1e-6)
    assert logged["val/kl"] != pytest.approx(logged["val/kl_noise"], rel=1e-3)
    figure = sent.figures["val/density"]
    assert len(figure.axes) == 2  # no sample(): no samples panel
    np.testing.assert_allclose(_image_of(figure, 0), _softmax(log_p), rtol=1e-6)
    np.testing.assert_allclose(_image_of(figure, 1), _softmax(g), rtol=1e-5)


def test_the_true_grid_and_samples_are_computed_once_for_each_data(tmp_path) -> None:
    callback = ToyDensityCallback(grid_size=6)
    callback.distribution = EightGaussians()
    assert callback.truth("grid") is callback.truth("grid")
    assert callback.truth("samples") is callback.truth("samples")
    torch.testing.assert_close(callback.truth("grid"), _true_grid(EightGaussians(), 6))
    assert kl_on_grid(callback.truth("grid"), callback.truth("grid")) == pytest.approx(0.0)
    model = _ebm((2,), Affine(W, C))
    wider = ToyBatches(EightGaussians(radius=1.0), [batch(VAL)], [batch(VAL)])
    trainer(callbacks=[callback]).validate(model, datamodule=wider, verbose=False)
    torch.testing.assert_close(callback.truth("grid"), _true_grid(EightGaussians(radius=1.0), 6))


def test_no_figures_without_tensorboard_and_none_in_the_sanity_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = Sent(monkeypatch, src.callbacks.toy_density)
    calls: list[int] = []
    model = _ebm((2,), Affine(W, C))
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda n, g: calls.append(n) or sample(n, g))
    run = trainer(logger=False, callbacks=[ToyDensityCallback(GRID, n_samples=0)])
    run.validate(model, datamodule=_toy(VAL), verbose=False)
    assert "val/kl" in run.callback_metrics and not sent.figures and calls == []
    fit = trainer(
        logger=False,
        limit_train_batches=0,
        num_sanity_val_steps=1,
        callbacks=[ToyDensityCallback(GRID)],
    )
    fit.fit(model, datamodule=_toy(VAL))
    assert "val/kl" not in fit.callback_metrics


class _Classifier(pl.LightningModule):
    def validation_step(self, batch: Any, batch_idx: int) -> None: ...


def test_it_refuses_a_model_with_neither_protocol_and_data_without_a_density() -> None:
    with pytest.raises(UserError, match=r"_Classifier has neither log_density\(x\) nor sample"):
        trainer(callbacks=[ToyDensityCallback()]).validate(
            _Classifier(), datamodule=_toy(VAL), verbose=False
        )
    images = ToyBatches(None, [batch(VAL)], [batch(VAL)])  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"use data=toy2d .* or remove the callback"):
        trainer(callbacks=[ToyDensityCallback()]).validate(
            _ebm((2,), Affine(W, C)), datamodule=images, verbose=False
        )
