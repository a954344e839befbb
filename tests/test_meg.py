"""'GAN = analysis + sampling': the energy loss, the mutual-information estimator, the entropy
switch, checkpoints and the experiments."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import open_dict

from src.callbacks.toy_density import ToyDensityCallback
from src.losses.contrastive_divergence import MEGLoss
from src.models.ebm_generator import StatisticsNet, jsd_mutual_information
from src.train import build, train
from src.utils.checkpoint import load_model, read_checkpoint, run_config
from src.utils.errors import UserError

FAST = [
    "trainer.fast_dev_run=true",
    "callbacks.toy_density.grid_size=40",
    "callbacks.toy_density.n_samples=500",
]


def test_meg_loss_is_the_contrast_plus_the_gradient_at_the_data_plus_the_regulariser() -> None:
    def critic(x: torch.Tensor) -> torch.Tensor:  # E(x) = |x|^2 / 2, grad E = x
        return -0.5 * x.square().sum(1)

    real, fake = torch.randn(50, 2), torch.randn(40, 2) * 3
    terms = MEGLoss(lam=0.7, alpha=0.2).critic_loss(critic, real, fake)
    e_real, e_fake = -critic(real), -critic(fake)
    penalty = real.square().sum(1).mean()
    assert terms["gradient_penalty"].item() == pytest.approx(penalty.item(), rel=1e-5)
    reg = 0.2 * (e_real.square().mean() + e_fake.square().mean())
    expected = e_real.mean() - e_fake.mean() + 0.7 * penalty + reg
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_meg_loss_gradients_with_and_without_the_penalty(lam: float) -> None:
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    terms = MEGLoss(lam=lam, alpha=0.1).critic_loss(critic, real, fake)
    got = torch.autograd.grad(terms["loss"], list(critic.parameters()))
    x = real.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    d_real, d_fake = critic(real), critic(fake)
    reference = (
        d_fake.mean()
        - d_real.mean()
        + lam * grad_x.square().sum(1).mean()
        + 0.1 * (d_real.square().mean() + d_fake.square().mean())
    )
    expected = torch.autograd.grad(reference, list(critic.parameters()))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    assert terms["gradient_penalty"].item() == pytest.approx(
        grad_x.square().sum(1).mean().item(), rel=1e-5
    )


def test_jsd_estimator_is_the_formula_with_shuffled_codes() -> None:
    torch.manual_seed(0)
    stats = StatisticsNet(3, (2,), hidden=(8,))
    z, x = torch.randn(16, 3), torch.randn(16, 2)
    value = jsd_mutual_information(stats, z, x, torch.Generator().manual_seed(5))
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    joint = torch.stack([-F.softplus(-stats(z[i : i + 1], x[i : i + 1]))[0] for i in range(16)])
    marginal = torch.stack(
        [F.softplus(stats(z[perm[i]][None], x[i : i + 1]))[0] for i in range(16)]
    )
    assert value.item() == pytest.approx((joint.mean() - marginal.mean()).item(), abs=1e-6)


def _fit_statistics(dependent: bool, steps: int = 300) -> float:
    torch.manual_seed(0)
    stats = StatisticsNet(2, (2,), hidden=(32, 32))
    opt = torch.optim.Adam(stats.parameters(), lr=3e-3)
    for _ in range(steps):
        z = torch.randn(256, 2)
        x = z + 0.1 * torch.randn(256, 2) if dependent else torch.randn(256, 2)
        loss = -jsd_mutual_information(stats, z, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = torch.randn(4000, 2)
    x = z + 0.1 * torch.randn(4000, 2) if dependent else torch.randn(4000, 2)
    with torch.no_grad():
        return jsd_mutual_information(stats, z, x).item()


def test_the_estimate_separates_dependent_from_independent_pairs() -> None:
    # the JSD bound is at most 2 log 2 - ... below 0 for independent pairs at the optimum: -2 log 2
    dependent, independent = _fit_statistics(True), _fit_statistics(False)
    assert dependent > -2 * math.log(2) + 0.8
    assert independent < -2 * math.log(2) + 0.1


def _one_generator_step(make_cfg, weight: float):
    _, model = build(make_cfg("experiment=meg_toy", f"model.entropy_weight={weight}"))
    model.trainer = None
    optimizers, _ = model.configure_optimizers()
    before = [p.detach().clone() for p in model.statistics.parameters()]
    terms = model.generator_terms(64)
    optimizers[0].zero_grad()
    terms["generator_loss"].backward()
    optimizers[0].step()
    moved = any(
        not torch.equal(a, b) for a, b in zip(before, model.statistics.parameters(), strict=True)
    )
    return terms, moved


def test_the_entropy_term_trains_the_statistics_net_and_can_be_switched_off(make_cfg) -> None:
    terms, moved = _one_generator_step(make_cfg, 1.0)
    assert "mi" in terms and moved
    terms, moved = _one_generator_step(make_cfg, 0.0)
    assert "mi" not in terms and not moved


def test_refined_negatives_are_the_generator_samples_moved_down_the_energy(make_cfg) -> None:
    """With noise 0 the refinement is gradient descent on E: the same draws G(z), lower energy."""
    _, model = build(make_cfg("experiment=meg_toy", "model.refine.noise=0.0"))
    torch.manual_seed(0)
    refined = model.negatives(256)
    torch.manual_seed(0)
    raw = model.sample(256)
    assert not torch.allclose(refined, raw)
    assert model.energy(refined).mean() < model.energy(raw).mean()
    _, plain = build(make_cfg("experiment=meg_toy", "model.refine=null"))
    torch.manual_seed(0)
    negatives = plain.negatives(256)
    torch.manual_seed(0)
    assert torch.equal(negatives, plain.sample(256))


LATENT_CHAIN = (
    "model.refine_code={_target_:src.models.components.langevin.LangevinSampler,"
    "steps:200,step_size:0.04,noise:null,grad_clamp:null,data_range:null}"
)


def test_code_chain_under_a_flat_energy_keeps_the_normal_prior(make_cfg) -> None:
    """With E = 0 the chain on E_z = |z|^2 / 2 samples N(0, I) from any start: from z = 0 its
    end points have mean 0 and variance 1 / (1 - step / 2) (the Euler chain's), not 0 or 1/2."""
    _, model = build(make_cfg("experiment=meg_toy", "model.refine=null", LATENT_CHAIN))
    for parameter in model.critic.parameters():
        torch.nn.init.zeros_(parameter)
    torch.manual_seed(0)
    z = model.refine_code(model.code_energy, torch.zeros(4000, 2))
    assert z.mean(0).abs().max() < 0.06
    torch.testing.assert_close(z.var(0), torch.full((2,), 1 / (1 - 0.02)), atol=0.07, rtol=0)


def test_code_chain_moves_codes_down_the_code_energy(make_cfg) -> None:
    cfg = make_cfg("experiment=meg_toy", "model.refine=null", LATENT_CHAIN)
    _, model = build(cfg)
    model.refine_code.noise, model.refine_code.steps = 0.0, 20
    z = model.generator.sample_code(256, torch.Generator().manual_seed(0))
    moved = model.refine_code(model.code_energy, z)
    assert model.code_energy(moved).mean() < model.code_energy(z).mean()
    with torch.no_grad():
        expected = model.energy(model.generator(z)) + 0.5 * z.square().sum(1)
    torch.testing.assert_close(model.code_energy(z).detach(), expected)


def test_code_chain_needs_a_normal_code(make_cfg) -> None:
    cfg = make_cfg("experiment=meg_toy", "model.generator.code=uniform", LATENT_CHAIN)
    with pytest.raises(UserError, match=r"model\.generator\.code=normal"):
        build(cfg)


@pytest.mark.parametrize("experiment", ["meg_toy", "meg_toy_noentropy"])
def test_smoke_fast_dev_run_meg(make_cfg, experiment: str) -> None:
    metrics = train(make_cfg(f"experiment={experiment}", *FAST))
    for key in ("train/critic_loss", "val/kl", "test/kl", "test/modes_covered"):
        assert math.isfinite(metrics[key]), key
    assert ("train/mi" in metrics) == (experiment == "meg_toy")
    parts = sum(metrics[f"test/kl_{part}"] for part in ("mass", "shares", "within"))
    assert parts == pytest.approx(metrics["test/kl"], rel=1e-4)


def test_checkpoint_loads_weights_only(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("experiment=meg_toy", *FAST[1:])
    with open_dict(cfg):
        cfg.test = False
        cfg.trainer.update(max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    train(cfg)
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(path)
    model = load_model(path, run_config(path, ckpt), ckpt)
    assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 2)


@pytest.mark.slow
def test_training_lowers_the_grid_kl_of_the_energy(make_cfg) -> None:
    cfg = make_cfg("experiment=meg_toy", "logger=csv", "data.n_val=500")
    with open_dict(cfg):
        cfg.trainer.update(max_epochs=8, max_time=None)
    datamodule, model = build(cfg)
    callback = ToyDensityCallback(grid_size=200)
    callback.distribution = datamodule.distribution
    untrained = callback.grid_measures(callback.on_grid(model.log_density, "cpu"), model)["kl"]
    metrics = train(cfg)
    assert untrained > 2.0 and metrics["test/kl"] < 0.5 * untrained, (untrained, metrics["test/kl"])
