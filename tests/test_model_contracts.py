"""Small promises of the models and their components that no step test pinned, found by mutmut
alive in src/models/ (README, "Testing"): the Gaussian latent's mean is mu, NCE's evaluation noise
is loc + L eps exactly, a noise scale below 1 is a noise, the softmax head's default reduction, a
multilabel test set on its own is the single-item one, and the BiLSTM keeps the batch's padded
length."""

from __future__ import annotations

import functools

import pytest
import torch

from src.data.toy2d import EightGaussians
from src.losses.multilabel import MultilabelCE
from src.losses.nce import NCELoss
from src.models.components.latents import GaussianLatent
from src.models.components.tagging import BiLSTM, SoftmaxHead
from src.models.multilabel import MultilabelClassifier
from src.models.nce_density import NCEDensity
from tests.stubs_b import Affine, ToyBatches, batch, evaluate, trainer


def test_the_gaussian_latents_mean_is_mu_not_the_log_variance() -> None:
    latent = GaussianLatent(dim=2)
    params = torch.tensor([[0.5, -1.0, 3.0, -2.0]])  # mu = (0.5, -1), logvar = (3, -2)
    assert latent.mean(params).tolist() == [[0.5, -1.0]]


def _nce(noise_ratio: int = 2) -> NCEDensity:
    model = NCEDensity(
        loss=NCELoss(noise_ratio=noise_ratio),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        hidden=(),
        grid_size=8,
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
    with pytest.raises(Exception, match="has no noise distribution yet"):
        model.noise()


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
