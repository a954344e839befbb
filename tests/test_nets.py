"""The networks are the architectures their docstrings and papers give: layer by layer (kind,
sizes, kernels, strides, paddings, slopes), parameter counts from the papers where they state
them, output shapes for batches of more than one, and the settings reaching the layers that use
them."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from src.models.components.capsnets import CNNLogits, ReconstructionDecoder, SabourCapsNet
from src.models.components.energy_nets import ConvEnergy
from src.models.components.gan_nets import DCGANCritic, DCGANGenerator, MLPCritic
from src.models.components.nets import ConvDecoder, ConvEncoder
from src.models.components.tagging import BiLSTM, SoftmaxHead
from src.models.ebm_generator import StatisticsNet
from src.utils.errors import UserError


def layer(module: nn.Module) -> tuple[Any, ...]:
    """A layer as (kind, the settings that shape what it computes)."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        size, stride, padding = module.kernel_size[0], module.stride[0], module.padding[0]
        return (kind, module.in_channels, module.out_channels, size, stride, padding)
    if isinstance(module, nn.Linear):
        return (kind, module.in_features, module.out_features)
    if isinstance(module, nn.LeakyReLU):
        return (kind, module.negative_slope)
    if isinstance(module, nn.LayerNorm):
        return (kind, tuple(module.normalized_shape))
    if isinstance(module, nn.BatchNorm2d):
        return (kind, module.num_features)
    if isinstance(module, nn.Unflatten):
        return (kind, module.dim, tuple(module.unflattened_size))
    return (kind,)


def layers(sequential: nn.Sequential) -> list[tuple[Any, ...]]:
    return [layer(m) for m in sequential]


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sabour_capsnet_is_the_papers_network_with_its_parameter_count() -> None:
    """Sabour et al. 2017: Conv1 256 9x9 ReLU, PrimaryCaps 32 maps of 8-d 9x9 stride 2 (6x6x32 =
    1152 capsules), DigitCaps 10 x 16-d, 3 routing iterations: 6.8M parameters, 8.2M with the
    512-1024-784 reconstruction decoder (the paper's figures)."""
    net = SabourCapsNet()
    assert layers(net.conv) == [("Conv2d", 1, 256, 9, 1, 0), ("ReLU",)]
    conv1 = 256 * 81 + 256
    primary = 256 * 256 * 81 + 256
    digit = 1152 * 10 * 8 * 16
    assert n_parameters(net) == conv1 + primary + digit == 6_804_224
    routing = net.routing
    assert (routing.in_caps, routing.out_caps, routing.shared_weights) == (1152, 10, False)
    assert (routing.iterations, routing.revised, routing.detach_iterations) == (3, False, False)
    assert routing.squash_constant == net.primary.squash_constant == 1.0
    decoder = ReconstructionDecoder(10, 16)
    assert layers(decoder.net) == [
        ("Linear", 160, 512),
        ("ReLU",),
        ("Linear", 512, 1024),
        ("ReLU",),
        ("Linear", 1024, 784),
        ("Sigmoid",),
    ]
    assert round((n_parameters(net) + n_parameters(decoder)) / 1e5) == 82


def test_sabour_capsnet_passes_its_settings_on_and_reads_any_image_size() -> None:
    net = SabourCapsNet(
        image_shape=(2, 29, 31),
        n_classes=4,
        conv_channels=8,
        n_maps=3,
        primary_dim=5,
        capsule_dim=6,
        iterations=2,
        revised=True,
        squash_constant=0.5,
        detach_iterations=True,
    )
    assert layers(net.conv) == [("Conv2d", 2, 8, 9, 1, 0), ("ReLU",)]
    routing = net.routing
    assert (routing.iterations, routing.revised, routing.detach_iterations) == (2, True, True)
    assert routing.squash_constant == net.primary.squash_constant == 0.5
    assert routing.in_caps == 3 * 7 * 8  # 29x31 -> conv 21x23 -> primary 7x8
    scores, poses = net(torch.rand(3, 2, 29, 31))
    assert scores.shape == (3, 4) and poses.shape == (3, 4, 6)
    torch.testing.assert_close(scores, poses.norm(dim=-1))


def test_the_reconstruction_decoder_keeps_only_the_chosen_capsule() -> None:
    decoder = ReconstructionDecoder(3, 2, image_shape=(1, 4, 5))
    poses = torch.randn(2, 3, 2, dtype=torch.float64)
    decoder.double()
    keep = torch.tensor([2, 0])
    only = torch.zeros_like(poses)
    only[0, 2], only[1, 0] = poses[0, 2], poses[1, 0]
    out = decoder(poses, keep)
    assert out.shape == (2, 1, 4, 5) and out.dtype == torch.float64
    torch.testing.assert_close(out, decoder.net(only.flatten(1)).view(2, 1, 4, 5))


def test_the_cnn_baseline_has_its_width() -> None:
    net = CNNLogits()
    assert [layer(m) for m in net.backbone if isinstance(m, nn.Conv2d)] == [
        ("Conv2d", 1, 64, 3, 1, 1),
        ("Conv2d", 64, 64, 3, 1, 1),
        ("Conv2d", 64, 128, 3, 1, 1),
        ("Conv2d", 128, 128, 3, 1, 1),
    ]
    assert layer(net.head) == ("Linear", 128, 10)


def test_conv_energy_is_silu_convs_with_stride_two_after_the_first() -> None:
    net = ConvEnergy()
    assert layers(net.features) == [
        ("Conv2d", 1, 32, 3, 1, 1),
        ("SiLU",),
        ("Conv2d", 32, 64, 3, 2, 1),
        ("SiLU",),
        ("Conv2d", 64, 128, 3, 2, 1),
        ("SiLU",),
        ("Conv2d", 128, 128, 3, 2, 1),
        ("SiLU",),
    ]
    assert layer(net.readout) == ("Linear", 128, 1)
    x = torch.rand(3, 1, 28, 28)
    assert net.features(x).shape == (3, 128, 4, 4)
    expected = net.readout(net.features(x).sum((2, 3)))[:, 0]
    torch.testing.assert_close(net(x), expected)


def test_mlp_critic_is_the_authors_784_128_32_1_with_leaky_relus() -> None:
    net = MLPCritic((1, 28, 28))
    assert layers(net.net) == [
        ("Flatten",),
        ("Linear", 784, 128),
        ("LeakyReLU", 0.2),
        ("Linear", 128, 32),
        ("LeakyReLU", 0.2),
        ("Linear", 32, 1),
    ]
    assert layers(MLPCritic((2,), hidden=(5,), norm="layer").net) == [
        ("Flatten",),
        ("Linear", 2, 5),
        ("LayerNorm", (5,)),
        ("LeakyReLU", 0.2),
        ("Linear", 5, 1),
    ]
    assert net(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_the_dcgan_nets_are_7_14_28_with_their_norms() -> None:
    generator = DCGANGenerator()
    assert (generator.latent_dim, generator.code) == (64, "normal")
    assert layers(generator.net) == [
        ("Linear", 64, 128 * 49),
        ("Unflatten", 1, (128, 7, 7)),
        ("BatchNorm2d", 128),
        ("ReLU",),
        ("ConvTranspose2d", 128, 64, 4, 2, 1),
        ("BatchNorm2d", 64),
        ("ReLU",),
        ("ConvTranspose2d", 64, 1, 4, 2, 1),
        ("Sigmoid",),
    ]
    assert DCGANGenerator(code="uniform", latent_dim=3).code == "uniform"
    assert generator(torch.randn(3, 64)).shape == (3, 1, 28, 28)
    critic = DCGANCritic()
    assert layers(critic.net) == [
        ("Conv2d", 1, 64, 4, 2, 1),
        ("LeakyReLU", 0.2),
        ("Conv2d", 64, 128, 4, 2, 1),
        ("LayerNorm", (128, 7, 7)),
        ("LeakyReLU", 0.2),
        ("Flatten",),
        ("Linear", 128 * 49, 1),
    ]
    assert layer(DCGANCritic(width=4, norm="none").net[3]) == ("Identity",)
    assert critic(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_the_dcgan_generator_refuses_other_image_sizes_by_name() -> None:
    with pytest.raises(UserError, match="makes 28x28 images, not 32x32: use MLPGenerator"):
        DCGANGenerator(image_shape=(3, 32, 32))


def test_the_vae_conv_nets_quarter_and_restore_the_image() -> None:
    encoder = ConvEncoder((1, 28, 28), out_dim=4)
    assert layers(encoder.net) == [
        ("Conv2d", 1, 32, 4, 2, 1),
        ("ReLU",),
        ("Conv2d", 32, 64, 4, 2, 1),
        ("ReLU",),
        ("Flatten",),
        ("Linear", 64 * 49, 256),
        ("ReLU",),
        ("Linear", 256, 4),
    ]
    decoder = ConvDecoder((1, 28, 28), in_dim=2)
    assert layers(decoder.net) == [
        ("Linear", 2, 256),
        ("ReLU",),
        ("Linear", 256, 64 * 49),
        ("ReLU",),
        ("Unflatten", 1, (64, 7, 7)),
        ("ConvTranspose2d", 64, 32, 4, 2, 1),
        ("ReLU",),
        ("ConvTranspose2d", 32, 1, 4, 2, 1),
    ]
    assert decoder(encoder(torch.rand(3, 1, 28, 28))[:, :2]).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_the_bilstm_embeds_with_padding_zero_and_drops_out_between_layers_only(
    n_layers: int,
) -> None:
    net = BiLSTM(vocab_size=9, layers=n_layers)
    assert (net.embedding.num_embeddings, net.embedding.embedding_dim) == (9, 128)
    assert net.embedding.padding_idx == 0
    lstm = net.lstm
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (128, 128, n_layers)
    assert lstm.batch_first and lstm.bidirectional
    assert lstm.dropout == (0.1 if n_layers > 1 else 0.0)
    assert net.dropout.p == 0.1 and net.out_dim == 256
    net.eval()
    tokens = torch.tensor([[3, 4, 5], [6, 7, 0]])
    out = net(tokens, tokens > 0)
    assert out.shape == (2, 3, 256)
    alone = net(tokens[1:, :2], tokens[1:, :2] > 0)
    torch.testing.assert_close(out[1, :2], alone[0])  # the padding does not reach the words


def test_the_softmax_head_keeps_its_size() -> None:
    assert SoftmaxHead(4).num_tags == 4


def test_the_statistics_net_reads_the_code_and_the_flattened_sample() -> None:
    net = StatisticsNet(latent_dim=2, data_shape=(1, 2, 2), hidden=(5,))
    assert layer(net.net[0]) == ("Linear", 6, 5)
    z, x = torch.randn(3, 2), torch.randn(3, 1, 2, 2)
    out = net(z, x)
    assert out.shape == (3,)
    torch.testing.assert_close(out, net.net(torch.cat([z, x.flatten(1)], 1))[:, 0])
