"""What the building blocks promise beyond their maths, found alive by mutmut (docs/testing.md):
the replay buffer's draws follow the generator they are given and its defaults are the article's;
the Gumbel-softmax relaxation is the one written by hand from the same uniforms, at the
step's temperature; the energy and statistics nets are SiLU MLPs with one output per example; the
EBM's data noise has the configured scale; evaluation draws repeat; the refusals name the fix."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from src.losses.contrastive_divergence import ContrastiveDivergence
from src.losses.gradient_penalty import WassersteinGP
from src.models.components.capsnets import SmallCapsNet
from src.models.components.capsule import PrimaryCapsules, Routing, squash
from src.models.components.classifier_nets import ConvClassifierNet
from src.models.components.energy_nets import MLPEnergy
from src.models.components.gan_nets import Generator, MLPCritic, MLPGenerator
from src.models.components.langevin import LangevinSampler, ReplayBuffer
from src.models.components.latents import GumbelSoftmaxLatent
from src.models.components.tagging import BiLSTM
from src.models.ebm import EBM
from src.models.ebm_generator import StatisticsNet
from src.models.wgan_gp import WGANGP
from src.utils.errors import UserError
from tests.stubs_b import Affine, AffineGenerator, HalfSquare, batch, evaluate, loader, trainer

ASSET = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist_classifier.ckpt"


def test_buffer_draws_follow_the_generator_they_are_given() -> None:
    buffer = ReplayBuffer(50, (2,), (-1.0, 1.0), reinit_prob=0.5)
    first = buffer.draw(20, torch.Generator().manual_seed(3))
    torch.manual_seed(0)  # the global RNG plays no part
    again = buffer.draw(20, torch.Generator().manual_seed(3))
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)
    x, index, fresh = first
    assert 0 < int(fresh.sum()) < 20
    torch.testing.assert_close(x[~fresh], buffer.points[index[~fresh]])
    assert bool((x[fresh].abs() <= 1).all())


def test_a_one_slot_buffer_works_and_the_default_reinitialises_five_percent() -> None:
    """Du & Mordatch (2019) restart 5% of the chains from noise."""
    assert ReplayBuffer(10, (2,), (0.0, 1.0)).reinit_prob == 0.05
    one = ReplayBuffer(1, (2,), (0.0, 1.0))
    x, index, _ = one.draw(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 2) and index.tolist() == [0, 0, 0]
    with pytest.raises(UserError, match="need size >= 1 and 0 <= reinit_prob <= 1"):
        ReplayBuffer(0, (2,), (0.0, 1.0))


def test_the_gumbel_relaxation_is_the_hand_written_one_at_the_steps_temperature() -> None:
    """softmax((logits - log(-log u)) / tau(step)) with u the generator's float64 uniforms,
    tau(step) = max(tau_min, tau0 0.999^step); step 0 by default."""
    latent = GumbelSoftmaxLatent(n_vars=2, n_classes=3, tau0=2.0, tau_min=0.5).train()
    params = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = torch.rand(4, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    perturbed = params.view(4, 2, 3) - torch.log(-torch.log(u))
    for step in (0, 300):
        tau = max(0.5, 2.0 * 0.999**step)
        expected = (perturbed / tau).softmax(-1).flatten(-2)
        got = latent.rsample(params, step, torch.Generator().manual_seed(2))
        torch.testing.assert_close(got, expected)
    default = latent.rsample(params, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(default, (perturbed / 2.0).softmax(-1).flatten(-2))


def test_the_gumbel_latents_defaults_are_32_categoricals_of_10() -> None:
    latent = GumbelSoftmaxLatent()
    assert (latent.n_vars, latent.n_classes, latent.dim) == (32, 10, 320)
    assert (latent.tau0, latent.tau_decay, latent.tau_min, latent.hard) == (1.0, 0.999, 0.1, False)
    assert GumbelSoftmaxLatent(tau0=0.5, tau_min=0.5).temperature(10) == 0.5
    with pytest.raises(ValueError, match="need 0 < tau_min <= tau0"):
        GumbelSoftmaxLatent(tau0=0.5, tau_min=0.0)


def test_the_energy_and_statistics_nets_are_silu_mlps_with_one_output_per_example() -> None:
    energy = MLPEnergy((1, 2, 2), hidden=(5,))
    assert [type(m).__name__ for m in energy.net] == ["Flatten", "Sequential"]
    assert [type(m).__name__ for m in energy.net[1]] == ["Linear", "SiLU", "Linear"]
    assert energy(torch.rand(3, 1, 2, 2)).shape == (3,)
    statistics = StatisticsNet(2, (2,), hidden=(5,))
    assert [type(m).__name__ for m in statistics.net] == ["Linear", "SiLU", "Linear"]
    assert statistics.net[-1].out_features == 1


def test_a_batch_normalised_critic_is_refused_with_the_norms_to_use() -> None:
    message = (
        "critic norm='batch': a WGAN-GP critic must not use BatchNorm (it couples the samples of "
        "a batch and breaks the per-sample gradient penalty); use model.critic.norm=layer or "
        "model.critic.norm=none."
    )
    with pytest.raises(UserError, match=re.escape(message)):
        MLPCritic((2,), norm="batch")


def _ebm(data_noise: float) -> EBM:
    sampler = LangevinSampler(0, 0.1, noise=0.0, grad_clamp=None, data_range=(-9.0, 9.0))
    return EBM(
        net=lambda data_shape: Affine((1.0, 0.0), 0.0),
        sampler=sampler,
        loss=ContrastiveDivergence(alpha=0.0),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        data_shape=(2,),
        buffer_size=10,
        data_noise=data_noise,
    )


@pytest.mark.parametrize("data_noise", [0.0, 0.5])
def test_the_ebm_adds_data_noise_of_the_configured_scale(data_noise: float) -> None:
    """E(x) = x_1 on data at 0: the logged real energies are the noise itself, N(0, s^2)."""
    model = _ebm(data_noise)
    trainer(limit_val_batches=0).fit(model, loader([batch(torch.zeros(4000, 2))]))
    e_real = model.last_energies["e_real"]
    assert set(model.last_energies) == {"e_real", "e_fake"}
    assert e_real.mean().item() == pytest.approx(0.0, abs=0.05)
    assert e_real.std().item() == pytest.approx(data_noise, abs=0.02)


def _wgan() -> WGANGP:
    """A WGAN-GP of an affine generator and the critic |x|^2 / 2, frozen (lr 0)."""
    return WGANGP(
        generator=AffineGenerator(((1.0, 0.5), (-0.3, 2.0)), (0.2, -0.1)),
        critic=HalfSquare(),
        loss=WassersteinGP(lam=1.0),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        critic_optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        n_critic=1,
    )


def test_wgan_evaluation_repeats_its_interpolates() -> None:
    """Two validations of the same model give the same gradient norm at the interpolates: they
    come from the batch's own generator, not from the global one."""
    model = _wgan()
    real = [torch.randn(64, 2, generator=torch.Generator().manual_seed(5))]
    first, _ = evaluate(model, "val", model.generator, real)
    torch.manual_seed(123)
    second, _ = evaluate(model, "val", model.generator, real)
    assert first["val/grad_norm"] == second["val/grad_norm"]
    assert math.isfinite(first["val/grad_norm"])


def test_generator_codes_are_the_generators_uniforms_or_normals() -> None:
    """U(-1, 1)^d as 2 u - 1 from the generator's uniforms, or its normals; the global RNG plays
    no part; the author's MLP generator draws 10-d uniform codes and ends in a sigmoid."""
    uniform = MLPGenerator((2,))
    assert (uniform.latent_dim, uniform.code) == (10, "uniform")
    torch.manual_seed(0)
    z = uniform.sample_code(4000, torch.Generator().manual_seed(1))
    expected = torch.rand(4000, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(z, expected)
    assert -1.0 <= float(z.min()) < -0.99 and 0.99 < float(z.max()) < 1.0
    normal = MLPGenerator((2,), code="normal", latent_dim=3)
    torch.testing.assert_close(
        normal.sample_code(5, torch.Generator().manual_seed(2)),
        torch.randn(5, 3, generator=torch.Generator().manual_seed(2)),
    )
    out = uniform(torch.randn(7, 10) * 50)
    assert out.shape == (7, 2) and bool(((out >= 0) & (out <= 1)).all())
    assert isinstance(MLPGenerator((2,), out_activation="none").net[-1], nn.Identity)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MLPGenerator((2,), code="beta"), "generator code='beta': choose 'uniform' or"),
        (
            lambda: MLPGenerator((2,), out_activation="tanh"),
            "generator out_activation='tanh': choose 'sigmoid' or 'none'.",
        ),
        (
            lambda: LangevinSampler(data_range=(1.0, 1.0)),
            "Langevin sampler: data_range=[1.0, 1.0] needs lo < hi.",
        ),
    ],
)
def test_bad_settings_of_the_blocks_name_the_choices(build, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        build()


def test_the_langevin_defaults_are_igebms_and_the_gradient_is_clamped_both_ways() -> None:
    """IGEBM: 60 steps of size 10, noise 0.005, gradient entries clamped to [-0.03, 0.03]. With
    E(x) = 100 (x_1 - x_2) and no noise a step moves x by (-10 * 0.03, +10 * 0.03), inside the
    default data range [0, 1]."""
    sampler = LangevinSampler()
    assert (sampler.steps, sampler.step_size, sampler.noise, sampler.grad_clamp) == (
        60,
        10.0,
        0.005,
        0.03,
    )
    one = LangevinSampler(1, 10.0, noise=0.0, grad_clamp=0.03)
    x = torch.full((3, 2), 0.5)
    moved = one(lambda v: 100 * (v[:, 0] - v[:, 1]), x)
    torch.testing.assert_close(moved, torch.tensor([[0.2, 0.8]]).expand(3, 2))
    assert LangevinSampler(0, 0.1)(lambda v: v.sum(1), x).equal(x)


def test_langevin_noise_follows_the_generator_it_is_given() -> None:
    sampler = LangevinSampler(3, 0.01, noise=0.5, grad_clamp=None)
    x = torch.zeros(4, 2)
    first = sampler(lambda v: v.square().sum(1), x, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(1)
    again = sampler(lambda v: v.square().sum(1), x, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(first, again)
    assert float(first.abs().max()) > 0.1


def test_langevin_sampling_under_inference_mode_is_the_same_chain() -> None:
    sampler = LangevinSampler(4, 0.1, noise=0.3, grad_clamp=None, data_range=None)
    start = torch.linspace(-1, 1, 8).reshape(4, 2)
    with torch.no_grad():
        plain = sampler(
            lambda v: v.square().sum(1), start, generator=torch.Generator().manual_seed(2)
        )
    with torch.inference_mode():
        batch = start.clone()  # an inference tensor, as a validation batch is
        inside = sampler(
            lambda v: v.square().sum(1), batch, generator=torch.Generator().manual_seed(2)
        )
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)
    assert not torch.equal(plain, start)


def test_the_small_capsnet_passes_its_settings_to_the_routing() -> None:
    net = SmallCapsNet()
    routing = net.routing
    assert (routing.iterations, routing.revised, routing.detach_iterations) == (3, False, False)
    assert routing.squash_constant == 1.0 and routing.shared_weights
    assert net.backbone[0].out_channels == 64
    assert net.primary.capsule_dim == 128  # each position's 2 * width channels are one capsule
    custom = SmallCapsNet(
        width=4, iterations=2, revised=True, squash_constant=0.5, detach_iterations=True
    )
    routing = custom.routing
    assert (routing.iterations, routing.revised, routing.detach_iterations) == (2, True, True)
    assert routing.squash_constant == 0.5
    scores, poses = custom(torch.rand(3, 1, 8, 8))
    assert scores.shape == (3, 10) and poses.shape == (3, 10, 16)


def test_the_feature_classifier_is_the_shipped_checkpoints_architecture() -> None:
    """conv32-conv32-pool-conv64-conv64-pool -> dense 128 (ReLU) -> dropout 0.3 -> dense 10: the
    shipped classifier's weights load into the defaults, strictly."""
    net = ConvClassifierNet()
    kinds = [type(m).__name__ for m in net.trunk]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"] * 2 + [
        "Flatten",
        "Linear",
        "ReLU",
    ]
    assert [type(m).__name__ for m in net.head] == ["Dropout", "Linear"]
    assert net.head[0].p == 0.3 and net.feature_dim == 128
    ckpt = torch.load(ASSET, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}
    net.load_state_dict(weights, strict=True)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_squash_keeps_zero_at_zero_and_uses_the_constant() -> None:
    s = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(squash(s), torch.tensor([[25 / 26 * 0.6, 25 / 26 * 0.8], [0, 0]]))
    torch.testing.assert_close(squash(s[:1], constant=0.5), 25 / 25.5 * s[:1] / 5)


def test_primary_capsules_are_sabours_by_default_and_record_their_grid() -> None:
    primary = PrimaryCapsules(4)
    conv = primary.conv
    assert (conv.out_channels, conv.kernel_size, conv.stride) == (32 * 8, (9, 9), (2, 2))
    assert primary.capsule_dim == 8 and primary.squash_constant == 1.0 and primary.grid is None
    small = PrimaryCapsules(
        4, capsule_dim=2, n_maps=3, kernel_size=3, stride=1, squash_constant=0.5
    )
    x = torch.randn(2, 4, 5, 6)
    out = small(x)
    assert small.grid == (3, 4) and out.shape == (2, 3 * 3 * 4, 2)
    raw = small.conv(x).reshape(2, 3, 2, 3, 4).permute(0, 1, 3, 4, 2).reshape(2, -1, 2)
    torch.testing.assert_close(out.norm(dim=-1), squash(raw, constant=0.5).norm(dim=-1))
    whole = PrimaryCapsules(4, kernel_size=None)
    assert whole(x).shape == (2, 30, 4) and whole.grid == (5, 6)


def test_routing_defaults_are_three_shared_iterations_and_one_is_enough() -> None:
    routing = Routing(4, 3, 2)
    assert (routing.iterations, routing.shared_weights, routing.revised) == (3, True, False)
    assert routing.squash_constant == 1.0
    one = Routing(4, 3, 2, iterations=1)
    assert one(torch.randn(2, 5, 4)).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="routing needs at least one iteration, got 0"):
        Routing(4, 3, 2, iterations=0)


def test_the_base_generator_draws_normal_codes_by_default() -> None:
    assert Generator(3).code == "normal"


def test_the_bilstm_has_one_layer_by_default() -> None:
    assert BiLSTM(vocab_size=5).lstm.num_layers == 1


def test_wgan_validation_under_inference_mode_measures_the_same_gradient_norm() -> None:
    model = _wgan()
    data = [batch(torch.linspace(-2, 2, 8).reshape(4, 2))]
    by_mode = [
        trainer(inference_mode=mode).validate(model, dataloaders=loader(data), verbose=False)[0]
        for mode in (True, False)
    ]
    assert by_mode[0] == by_mode[1]
    assert by_mode[0]["val/grad_norm"] > 0


def test_the_gumbel_posterior_density_over_importance_samples_is_per_sample() -> None:
    """log q of z with leading (importance-sample) dimensions equals log q of each sample alone
    (a survivor of the mutation sample viewed z by its first dimension only)."""
    torch.manual_seed(0)
    latent = GumbelSoftmaxLatent(n_vars=3, n_classes=4)
    params = torch.randn(5, 2, 12)
    z = torch.nn.functional.one_hot(torch.randint(4, (5, 2, 3)), 4).float().flatten(-2)
    whole = latent.log_q(params, z)
    assert whole.shape == (5, 2)
    for s in range(5):
        torch.testing.assert_close(whole[s], latent.log_q(params[s], z[s]))


def test_a_gumbel_prior_sample_has_every_class_slot_whichever_classes_were_drawn() -> None:
    latent = GumbelSoftmaxLatent(n_vars=1, n_classes=10)
    for seed in range(5):  # single draws: most miss the last class
        z = latent.prior_sample(1, generator=torch.Generator().manual_seed(seed))
        assert z.shape == (1, 10) and z.sum() == 1
