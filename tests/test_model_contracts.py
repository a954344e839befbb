"""Small promises of the models and their components that no step test pinned, found by mutmut
alive in src/models/ (docs/testing.md): the Gaussian latent's mean is mu, NCE's evaluation noise
is loc + L eps exactly, a noise scale below 1 is a noise, the softmax head's default reduction, a
multilabel test set on its own is the single-item one, the BiLSTM keeps the batch's padded
length, the refusals name the fix, the generator model's energies are -D(G(z)), the Gumbel prior
has one value per sample, and the EBM's KL split uses regions of 3 sigma."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from src.data.toy_distributions import EightGaussians
from src.losses.classification import CrossEntropy
from src.losses.contrastive_divergence import MEGLoss
from src.losses.multilabel import MultilabelCE
from src.losses.nce import NCELoss
from src.metrics.toy2d import (
    grid_kl_terms,
    grid_log_density,
    grid_points,
    kl_decomposition,
    kl_on_grid,
    mode_regions,
)
from src.models.base import BaseModule
from src.models.components.latents import GaussianLatent, GumbelSoftmaxLatent
from src.models.components.tagging import BiLSTM, SoftmaxHead
from src.models.ebm_generator import EBMGenerator
from src.models.multilabel import MultilabelClassifier
from src.models.nce_density import NCEDensity
from src.utils.errors import UserError
from tests.stubs import build_multi_item
from tests.stubs_b import Affine, AffineGenerator, ToyBatches, batch, evaluate, loader, trainer


def test_the_gaussian_latents_mean_is_mu_not_the_log_variance() -> None:
    latent = GaussianLatent(dim=2)
    params = torch.tensor([[0.5, -1.0, 3.0, -2.0]])  # mu = (0.5, -1), logvar = (3, -2)
    assert latent.mean(params).tolist() == [[0.5, -1.0]]


def _nce(noise_ratio: int = 2) -> NCEDensity:
    model = NCEDensity(
        loss=NCELoss(noise_ratio=noise_ratio),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        hidden=(),
    )
    model.net = Affine((0.3, -0.2), 0.1, keepdim=True)
    model.noise_loc.copy_(torch.tensor([5.0, -3.0]))
    model.noise_scale_tril.copy_(torch.tensor([[0.5, 0.0], [0.2, 0.25]]))
    return model


def test_nce_evaluation_noise_is_loc_plus_the_scale_times_seeded_normals() -> None:
    """Batch 1 of a validation draws eps from the model's eval_generator(1); the points the
    stub scored after the data are exactly loc + L eps (not loc - L eps, not L^T eps)."""
    model = _nce()
    x = torch.zeros(3, 2)
    data = ToyBatches(EightGaussians(), [batch(x)], [batch(x), batch(x)])
    _, record = evaluate(model, "val", model.net, datamodule=data)
    (scored,) = record.inputs[1]  # the second validation batch: data, then noise, in one call
    eps = torch.randn(6, 2, generator=model.eval_generator(1))
    expected = model.noise_loc + eps @ model.noise_scale_tril.T
    torch.testing.assert_close(scored[3:], expected)


def test_a_noise_whose_scale_is_below_one_is_still_a_noise() -> None:
    model = _nce()
    q = model.noise()
    assert torch.allclose(q.loc, torch.tensor([5.0, -3.0]))
    model.noise_scale_tril.zero_()
    message = (
        "NCEDensity has no noise distribution yet: it is fitted to the training data when "
        "training starts, or loaded from an NCEDensity checkpoint."
    )
    with pytest.raises(UserError, match=re.escape(message)):
        model.noise()


class _Images(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return loader([batch(torch.zeros(2, 2))])


def test_nce_refuses_data_it_cannot_fit_its_noise_to_by_name() -> None:
    message = (
        "NCEDensity fits its noise to the training data, and _Images does not offer it "
        "(train_examples()): use data=toy2d."
    )
    model = _nce()
    model.noise_scale_tril.zero_()  # not fitted yet
    with pytest.raises(UserError, match=re.escape(message)):
        trainer().fit(model, datamodule=_Images())


def test_a_fixed_size_capsule_net_refuses_the_pairs_by_name() -> None:
    model = build_multi_item()
    model.net.fixed_input_size = True
    message = (
        "ScoresAndPoses has per-input routing weights and reads only the image size it was "
        "built for, not the 56x28 pairs: use model=capsnet_small or model=cnn_sigmoid, or "
        "data.stacked_pairs=0."
    )
    pairs = (torch.rand(2, 4), torch.tensor([[0, 1], [2, 3]]))
    with pytest.raises(UserError, match=re.escape(message)):
        model.test_step(pairs, 0, dataloader_idx=1)


def test_the_generator_models_energies_are_minus_the_critic_of_its_samples() -> None:
    """What the divergence guard reads after a generator step: `e_fake` = E(G(z)) = -D(G(z))."""
    generator = AffineGenerator(((1.0, 0.5), (-0.3, 2.0)), (0.2, -0.1))
    model = EBMGenerator(
        statistics=nn.Linear(1, 1),
        entropy_weight=0.0,
        generator=generator,
        critic=Affine((0.9, -0.8), 0.3),
        loss=MEGLoss(lam=0.1),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        critic_optimizer=functools.partial(torch.optim.SGD, lr=0.0),
    )
    terms = model.generator_terms(5)
    (z,) = generator.calls
    e_fake = -((z @ generator.a.T + generator.b) @ torch.tensor([0.9, -0.8]) + 0.3)
    assert list(model.last_energies) == ["e_fake"]
    torch.testing.assert_close(model.last_energies["e_fake"], e_fake.detach())
    torch.testing.assert_close(terms["generator_loss"], e_fake.mean())


def test_the_gumbel_prior_is_one_log_density_per_sample() -> None:
    """Over any leading dimensions, as `log_q` (importance samples come as (S, B, D))."""
    latent = GumbelSoftmaxLatent(n_vars=3, n_classes=4)
    z = torch.rand(5, 12)
    torch.testing.assert_close(latent.log_prior(z), torch.full((5,), -3 * math.log(4)))
    samples = torch.rand(2, 5, 12)
    torch.testing.assert_close(latent.log_prior(samples), torch.full((2, 5), -3 * math.log(4)))


def test_the_ebm_splits_the_grid_kl_with_regions_of_three_sigma() -> None:
    dist = EightGaussians()
    _, _, log_p = grid_log_density(dist, 30)
    log_q = torch.zeros(30, 30)
    _, _, points = grid_points(dist.bounds, 30)
    region = mode_regions(points.reshape(-1, 2), dist.modes, 3 * dist.scale)
    expected = {"kl": kl_on_grid(log_p, log_q), **kl_decomposition(log_p, log_q, region, 8)}
    assert grid_kl_terms(log_p, log_q, dist) == pytest.approx(expected)


def test_the_softmax_heads_default_reduction_is_the_mean_over_sentences() -> None:
    head = SoftmaxHead(3)
    emissions, tags = torch.randn(2, 4, 3), torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert head.nll(emissions, tags, mask).item() == pytest.approx(
        head.nll(emissions, tags, mask, reduction="sum").item() / 2
    )


def test_a_multilabel_test_set_on_its_own_logs_single_item_metrics() -> None:
    """With one test loader Lightning passes no dataloader_idx: it is the single-item set."""
    model = MultilabelClassifier(
        net=torch.nn.Identity(),
        loss=MultilabelCE(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        n_classes=3,
    )
    logits = torch.tensor([[2.0, -1.0, -3.0], [-2.0, 1.0, -1.0]])
    labels = torch.tensor([0, 1])
    loader = torch.utils.data.DataLoader([(logits[i], labels[i]) for i in range(2)], batch_size=2)
    run = trainer()
    run.test(model, dataloaders=loader, verbose=False)
    logged = set(run.callback_metrics)
    assert "test/f1" in logged and not any(name.startswith("test/pairs_") for name in logged)


def test_the_bilstm_keeps_the_padded_length_of_its_batch() -> None:
    """A batch padded beyond its longest sentence: the output has the batch's length T, zeros
    beyond each sentence, not the longest sentence's length."""
    encoder = BiLSTM(vocab_size=10, embed_dim=4, hidden=3, layers=1, dropout=0.0)
    tokens = torch.tensor([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]])
    mask = tokens != 0
    out = encoder(tokens, mask)
    assert out.shape == (2, 5, 6)
    assert bool((out[~mask] == 0).all()) and bool((out[mask] != 0).any())


_FACTORY = functools.partial(nn.Linear, 2)


class _Probe(BaseModule):
    loss_task = CrossEntropy.task

    def __init__(
        self,
        head: nn.Module,
        factory: Any = _FACTORY,
        width: int = 3,
        names: tuple[str, ...] = ("a",),
        kind: type = nn.ReLU,
    ) -> None:
        super().__init__(CrossEntropy(), functools.partial(torch.optim.SGD, lr=0.0))
        self.save_hparams(ignore=["names"])
        self.head = head


class _SubProbe(_Probe):
    def __init__(self, extra: nn.Module, rate: float = 0.5) -> None:
        super().__init__(nn.Linear(2, 2), width=4)
        self.extra = extra


def test_hparams_leave_out_modules_factories_and_classes_by_rule() -> None:
    """No list to extend: a new module-, partial- or class-valued argument stays out of the
    hparams, data stays in (`ignore` leaves out data kept elsewhere), and a subclass's own
    arguments are read from its constructor's frame too."""
    assert dict(_Probe(nn.Linear(2, 2)).hparams) == {"width": 3}
    assert dict(_SubProbe(nn.Linear(1, 1)).hparams) == {"width": 4, "rate": 0.5}
