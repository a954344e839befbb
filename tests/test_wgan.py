"""WGAN-GP: the per-sample gradient penalty against closed forms, the manual optimisation schedule,
the critic's no-BatchNorm rule, the 2-d measures, and short runs of both experiments."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from src.losses.gradient_penalty import (
    WassersteinGP,
    critic_gradient_norm,
    gradient_penalty,
    interpolate,
)
from src.metrics.toy2d import mmd, mode_coverage
from src.models.components.gan_nets import DCGANCritic, MLPCritic, MLPGenerator
from src.models.wgan_gp import WGANGP
from src.train import build, train
from src.utils.errors import UserError
from tests.conftest import needs_fashion

TOY = ["model=wgan_gp_2d", "data=toy2d", "data.n_train=2048", "data.n_val=512", "data.n_test=512"]


class Linear(nn.Module):
    """D(x) = w . flatten(x) + b: grad_x D = w everywhere, so |grad| = |w| for every sample."""

    def __init__(self, dim: int, norm: float) -> None:
        super().__init__()
        w = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + 1.5


@pytest.mark.parametrize("norm", [0.5, 1.0, 2.5])
def test_penalty_of_a_linear_critic_equals_the_closed_form(norm: float) -> None:
    critic = Linear(784, norm)
    real, fake = torch.rand(6, 1, 28, 28, dtype=torch.float64), torch.rand(6, 1, 28, 28).double()
    two, grad_norm = gradient_penalty(critic, real, fake, "two_sided")
    one, _ = gradient_penalty(critic, real, fake, "one_sided")
    torch.testing.assert_close(grad_norm, torch.full((6,), norm, dtype=torch.float64))
    torch.testing.assert_close(two, torch.full((6,), (norm - 1) ** 2, dtype=torch.float64))
    torch.testing.assert_close(one, torch.full((6,), max(norm - 1, 0.0), dtype=torch.float64))
    # the plugin's critic loss: E[D(fake)] - E[D(real)] + lambda * mean penalty
    terms = WassersteinGP("two_sided", lam=10.0).critic_loss(critic, real, fake)
    expected = critic(fake).mean() - critic(real).mean() + 10.0 * (norm - 1) ** 2
    torch.testing.assert_close(terms["loss"], expected)


def test_penalty_is_taken_per_sample_at_per_sample_interpolates() -> None:
    """D(x) = |x|^2 / 2 has grad x: the norm at x_hat_i = e_i x_i + (1 - e_i) y_i is |x_hat_i|."""
    real, fake = torch.randn(5, 3, 4, dtype=torch.float64), torch.randn(5, 3, 4).double()

    def critic(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(1)

    penalty, norm = gradient_penalty(
        critic, real, fake, "two_sided", torch.Generator().manual_seed(3)
    )
    e = torch.rand(5, 1, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x_hat = e * real + (1 - e) * fake
    assert len(set(e.flatten().tolist())) == 5  # one coefficient per sample
    torch.testing.assert_close(norm, x_hat.flatten(1).norm(dim=1))
    torch.testing.assert_close(penalty, (x_hat.flatten(1).norm(dim=1) - 1) ** 2)


def test_penalty_of_one_sample_does_not_depend_on_the_others() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    for critic in (DCGANCritic(width=8, norm="layer"), MLPCritic([1, 28, 28], norm="layer")):
        batch = critic_gradient_norm(critic, x)
        alone = torch.cat([critic_gradient_norm(critic, x[i : i + 1]) for i in range(8)])
        torch.testing.assert_close(batch, alone)
    # the reason BatchNorm is refused: with it, a sample's gradient norm depends on its batch
    bn_critic = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.Linear(16, 1)
    )
    batch = critic_gradient_norm(lambda t: bn_critic(t).squeeze(-1), x)
    pairs = torch.cat(
        [
            critic_gradient_norm(lambda t: bn_critic(t).squeeze(-1), x[i : i + 2])
            for i in (0, 2, 4, 6)
        ]
    )
    assert not torch.allclose(batch, pairs, rtol=1e-2)


def test_interpolates_lie_on_the_segments() -> None:
    real, fake = torch.zeros(1000, 2), torch.ones(1000, 2)
    x_hat = interpolate(real, fake, torch.Generator().manual_seed(0))
    e = 1 - x_hat[:, 0]
    torch.testing.assert_close(x_hat[:, 0], x_hat[:, 1])  # the same e for all of a sample's dims
    assert e.min() >= 0 and e.max() <= 1 and abs(e.mean().item() - 0.5) < 0.03


def test_a_critic_with_batch_norm_is_refused(make_cfg) -> None:
    with pytest.raises(UserError, match="BatchNorm"):
        build(make_cfg(*TOY, "model.critic.norm=batch"))
    critic = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    generator = MLPGenerator([2], 2, [8], "normal", "none")
    with pytest.raises(UserError, match="BatchNorm1d"):
        WGANGP(generator, critic, WassersteinGP(), torch.optim.Adam, torch.optim.Adam)


@pytest.mark.parametrize("n_critic", [1, 3, 5])
def test_manual_optimisation_takes_n_critic_critic_steps_per_generator_step(
    make_cfg, n_critic: int
) -> None:
    cfg = make_cfg(
        *TOY,
        f"model.n_critic={n_critic}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=7",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=[]",
        "callbacks=none",
    )
    datamodule, model = build(cfg)
    steps = {"generator": 0, "critic": 0}
    generator_params = {id(p) for p in model.generator.parameters()}

    def count(optimizer: torch.optim.Optimizer, *_: object) -> None:
        first = optimizer.param_groups[0]["params"][0]
        steps["generator" if id(first) in generator_params else "critic"] += 1

    handle = register_optimizer_step_post_hook(count)
    try:
        import hydra

        trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        trainer.fit(model, datamodule=datamodule)
    finally:
        handle.remove()
    assert steps["critic"] == 14  # one per batch, 2 epochs of 7 batches
    assert steps["generator"] == 14 // n_critic  # counted across epochs


def test_weight_clipping_without_a_penalty(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*TOY, "loss.penalty=none", "loss.clip=0.02", "trainer.fast_dev_run=true")
    datamodule, model = build(cfg)
    import hydra

    hydra.utils.instantiate(cfg.trainer, logger=False).fit(model, datamodule=datamodule)
    assert max(p.abs().max().item() for p in model.critic.parameters()) <= 0.02 + 1e-7


def test_mode_coverage_of_the_true_distribution_and_of_a_collapsed_one() -> None:
    from src.data.toy_distributions import make_distribution

    dist = make_distribution("8gaussians")
    x, _ = dist.sample(20000, torch.Generator().manual_seed(0))
    exact = mode_coverage(x, dist.modes, dist.scale)
    assert exact["modes_covered"] == 8
    # P(|N(0, s^2 I_2)| <= 3 s) = 1 - exp(-9 / 2)
    assert exact["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    collapsed = mode_coverage(x[:100] * 0 + dist.modes[3], dist.modes, dist.scale)
    assert collapsed == {"modes_covered": 1.0, "mode_share": 0.125, "high_quality": 1.0}


def test_mmd_equals_the_double_sum_and_separates_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 2, generator=gen), torch.randn(5, 2, generator=gen) + 0.5

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        d2 = float((a.double() - b.double()).pow(2).sum())
        return sum(math.exp(-d2 / (2 * s**2)) for s in (0.1, 0.3, 1.0))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    a, b = torch.randn(800, 2, generator=gen), torch.randn(800, 2, generator=gen)
    assert abs(mmd(a, b)) < 0.01 < mmd(a, b + 1.0)


def test_smoke_fast_dev_run_toy_experiment_reports_the_2d_measures(make_cfg) -> None:
    cfg = make_cfg("experiment=wgan_gp_toy", *TOY[1:], "trainer.fast_dev_run=true")
    metrics = train(cfg)
    assert {"test/modes_covered", "test/high_quality", "test/mmd", "test/grad_norm"} <= set(metrics)
    assert {"train/critic_loss", "train/wasserstein", "train/gradient_penalty"} <= set(metrics)


def test_validation_under_the_trainers_inference_mode_gives_the_same_metrics(make_cfg) -> None:
    by_mode = [
        train(make_cfg(*TOY, "trainer.fast_dev_run=true", f"++trainer.inference_mode={mode}"))
        for mode in ("true", "false")
    ]
    assert by_mode[0]["test/grad_norm"] == by_mode[1]["test/grad_norm"] > 0
    assert by_mode[0]["test/wasserstein"] == by_mode[1]["test/wasserstein"]


@needs_fashion
def test_smoke_fast_dev_run_fmnist_experiment_with_the_sample_quality_callback(make_cfg) -> None:
    cfg = make_cfg(
        "experiment=wgan_gp_fmnist",
        "trainer.fast_dev_run=true",
        "callbacks.sample_quality.n_test=300",
        "callbacks.sample_quality.n_val=300",
        "callbacks.sample_quality.kid_subset_size=100",
    )
    metrics = train(cfg)
    assert metrics["test/fid"] > 0 and math.isfinite(metrics["test/kid"])


@pytest.mark.slow
def test_a_short_toy_run_covers_most_modes(make_cfg) -> None:
    """2400 critic steps (480 generator steps): on four seeds all 8 modes appeared by 2000."""
    cfg = make_cfg(
        "experiment=wgan_gp_toy",
        "trainer.max_time=null",
        "trainer.max_epochs=12",
        "trainer.check_val_every_n_epoch=12",
        "data.n_train=51200",
        "logger=[]",
        "callbacks=none",
    )
    metrics = train(cfg)
    assert metrics["test/modes_covered"] >= 6
