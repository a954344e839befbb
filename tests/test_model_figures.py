"""What each model hands to TensorBoard at the end of an evaluation, with stub networks: the
tensors behind its figures, image grids and histograms are the model's own quantities on the
stub (energies, critic values, latent means, decodings, transition scores), computed here."""

from __future__ import annotations

import functools
import math
from types import ModuleType, SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

import src.callbacks.image_evaluation
import src.callbacks.tagging_evaluation
import src.models.adversarial
import src.models.crf_tagger
import src.models.ebm
import src.models.ebm_generator
import src.models.multi_item
import src.models.nce_density
import src.models.vae
from src.callbacks.image_evaluation import (
    LatentSpaceCallback,
    PairsFigureCallback,
    ReconstructionsCallback,
    RoutingMapsCallback,
    SampleGridCallback,
)
from src.callbacks.tagging_evaluation import TaggingExamplesCallback
from src.data.toy_distributions import EightGaussians
from src.evaluation.figures import coupling_rows, manifold_codes
from src.losses.contrastive_divergence import ContrastiveDivergence
from src.losses.margin import MarginLoss
from src.metrics.toy2d import grid_points
from src.models.components.langevin import LangevinSampler
from src.models.components.latents import GaussianLatent
from src.models.ebm import EBM
from src.models.multi_item import MultiItemClassifier
from src.utils.errors import UserError
from tests.stubs import build_tagger, build_vae, sgd, stub_batches
from tests.stubs_b import Affine, AffineGenerator, ToyBatches, batch, loader, shared_rows, trainer

W, C = (0.9, -0.8), 0.3
GRID = 8


class Sent:
    """The figures, image grids and histograms a model module logged, by tag."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> None:
        self.figures: dict[str, Any] = {}
        self.grids: dict[str, tuple[torch.Tensor, int]] = {}
        self.histograms: dict[str, torch.Tensor] = {}
        for module in modules:
            monkeypatch.setattr(module, "log_figure", self._figure, raising=False)
            monkeypatch.setattr(module, "log_image_grid", self._grid, raising=False)
            monkeypatch.setattr(module, "log_histogram", self._histogram, raising=False)

    def _figure(self, trainer: Any, tag: str, figure: Any) -> None:
        assert isinstance(trainer, pl.Trainer)
        self.figures[tag] = figure

    def _grid(self, trainer: Any, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        assert isinstance(trainer, pl.Trainer)
        self.grids[tag] = (images.detach().clone(), nrow)

    def _histogram(self, trainer: Any, tag: str, values: torch.Tensor) -> None:
        assert isinstance(trainer, pl.Trainer)
        self.histograms[tag] = values.detach().clone()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _validate(
    model: Any, tmp_path, datamodule: Any = None, loader: Any = None, callbacks: Any = ()
) -> dict[str, float]:
    """The metrics a validation with a TensorBoard logger (and `callbacks`) gives."""
    run = trainer(logger=TensorBoardLogger(str(tmp_path)), callbacks=list(callbacks))
    if datamodule is not None:
        run.validate(model, datamodule=datamodule, verbose=False)
    else:
        run.validate(model, dataloaders=loader, verbose=False)
    return {k: float(v) for k, v in run.callback_metrics.items()}


def _image_of(figure: Any, panel: int) -> np.ndarray:
    return np.asarray(figure.axes[panel].images[0].get_array())


def _softmax(log_d: torch.Tensor) -> np.ndarray:
    return torch.softmax(log_d.flatten().double(), 0).reshape(log_d.shape).numpy()


def _grid_energy(w: tuple[float, ...], c: float, bounds: tuple[float, float]) -> torch.Tensor:
    _, _, points = grid_points(bounds, GRID, torch.float32)
    return points.reshape(-1, 2) @ torch.tensor(w) + c


def _toy(val: torch.Tensor) -> ToyBatches:
    train = batch(torch.zeros(4, 2))
    return ToyBatches(EightGaussians(), [train], [batch(val)])


VAL = torch.tensor([[0.5, -0.2], [1.0, 1.5], [-1.0, 0.3]])


def _ebm(data_shape: tuple[int, ...], energy: Affine) -> EBM:
    sampler = LangevinSampler(1, 0.05, noise=0.0, grad_clamp=None, data_range=(-4.0, 4.0))
    return EBM(
        net=lambda data_shape: energy,
        sampler=sampler,
        loss=ContrastiveDivergence(alpha=0.1),
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
        data_shape=data_shape,
        buffer_size=50,
        sample_steps=2,
        n_image_samples=9,
    )


def test_the_2d_ebm_sends_its_energies_of_data_and_buffer(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The density figure of 2-d data is the toy_density callback's (test_toy_density.py)."""
    sent = Sent(monkeypatch, src.models.ebm)
    energy = Affine(W, C)
    model = _ebm((2,), energy)
    _validate(model, tmp_path, datamodule=_toy(VAL))
    torch.testing.assert_close(sent.histograms["energy/data"], VAL @ torch.tensor(W) + C)
    buffered = model.buffer.points[torch.randperm(50, generator=torch.Generator().manual_seed(0))]
    e_buffer = buffered[:9].float() @ torch.tensor(W) + C
    torch.testing.assert_close(sent.histograms["energy/buffer_samples"], e_buffer)
    assert not sent.figures and not sent.grids


def test_the_image_ebm_sends_a_grid_of_buffer_rows_and_the_callback_one_of_fresh_chains(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.models.ebm, src.callbacks.image_evaluation)
    model = _ebm((1, 2, 2), Affine((0.1, 0.2), 0.0))
    images = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    grid = SampleGridCallback(n=9, seed=4)
    _validate(model, tmp_path, loader=loader([batch(images)]), callbacks=[grid])
    buffered, nrow = sent.grids["val/buffer_samples"]
    chains, chain_nrow = sent.grids["val/samples"]
    assert (len(buffered), nrow, len(chains), chain_nrow) == (9, 3, 9, 3)
    assert shared_rows(model.buffer.points, buffered) == 9
    assert shared_rows(model.buffer.points, chains) == 0
    torch.testing.assert_close(chains, model.sample(9, torch.Generator().manual_seed(4)))
    assert "val/density" not in sent.figures


def _wgan_parts() -> dict[str, Any]:
    return {
        "generator": AffineGenerator(((1.0, 0.5), (-0.3, 2.0)), (0.2, -0.1)),
        "critic": Affine(W, C),
        "optimizer": functools.partial(torch.optim.SGD, lr=0.0),
        "critic_optimizer": functools.partial(torch.optim.SGD, lr=0.0),
        "n_critic": 1,
    }


def test_the_latent_space_callback_sends_a_2d_vaes_posterior_means_and_manifold(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    model = build_vae(latent=GaussianLatent(dim=2))
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 2, (6, 1, 2, 2), generator=gen).float()
    y = torch.tensor([1, 0, 1, 2, 0, 1])

    class Data(ToyBatches):
        classes = ("zero", "one", "two")

    data = Data(EightGaussians(), [(x, y)], [(x, y)])
    _validate(model, tmp_path, datamodule=data, callbacks=[LatentSpaceCallback()])
    ax = sent.figures["val/latent_scatter"].axes[0]
    mu = model.latent.mean(model.encoder(x)).detach()
    for collection, c in zip(ax.collections, (0, 1, 2), strict=True):
        np.testing.assert_allclose(collection.get_offsets(), mu[y == c].numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    images, nrow = sent.grids["val/latent_manifold"]
    assert nrow == 15
    torch.testing.assert_close(images, model.decode(manifold_codes(15)).detach())
    unnamed = ToyBatches(EightGaussians(), [(x, y)], [(x, y)])  # no `classes`: the label ids
    _validate(
        build_vae(latent=GaussianLatent(dim=2)),
        tmp_path,
        datamodule=unnamed,
        callbacks=[LatentSpaceCallback()],
    )
    legend = sent.figures["val/latent_scatter"].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1", "2"]


def test_the_tagging_callback_sends_the_crfs_transition_scores_and_gold_vs_predicted(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.tagging_evaluation)
    texts: dict[str, str] = {}
    monkeypatch.setattr(
        src.callbacks.tagging_evaluation, "log_text", lambda t, tag, text: texts.update({tag: text})
    )
    model = build_tagger()
    sentences = [(["a", "b"], ["O", "B-PER"]), (["c"], ["O"]), (["d", "e"], ["B-LOC", "I-LOC"])]

    class Data(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.splits = {"val": sentences}

        def val_dataloader(self):
            return loader(stub_batches(model))

    _validate(model, tmp_path, datamodule=Data(), callbacks=[TaggingExamplesCallback(2)])
    figure = sent.figures["val/transitions"]
    np.testing.assert_allclose(_image_of(figure, 0), model.tagger.head.transitions.detach().numpy())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == model.tags
    assert math.isfinite(float(figure.axes[0].images[0].get_clim()[1]))
    chosen = sentences[::1][:2]  # 3 sentences, 2 examples: every first of a step of 1
    predicted = model.tag_sentences([tokens for tokens, _ in chosen])
    rows = texts["val/examples"].splitlines()
    assert rows[:2] == ["| gold | predicted |", "|---|---|"] and len(rows) == 4
    for row, (tokens, gold), pred in zip(rows[2:], chosen, predicted, strict=True):
        mark = "" if gold == pred else " ✗"
        assert row == f"| {model.format(tokens, gold)} | {model.format(tokens, pred)}{mark} |"


def test_the_tagging_callback_refuses_a_model_that_does_not_tag(tmp_path) -> None:
    model = _ebm((1, 2, 2), Affine((0.1, 0.2), 0.0))
    with pytest.raises(UserError, match=r"EBM has no tag_sentences\(\), format\(\)"):
        _validate(model, tmp_path, loader=loader([]), callbacks=[TaggingExamplesCallback()])


class _RoutingNet(nn.Module):
    """A capsule-net stub on 1x4x4 images: the scores of classes 0..2 are sigmoids of the first
    three pixels, the poses (B, 3, 2) the score and the class index, and the routing
    coefficients (B, 2 types x 4 positions, 3) a fixed function of the pixels."""

    def __init__(self, routing: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))
        if routing:
            self.routing = SimpleNamespace(last_coupling=None)
        self.primary = SimpleNamespace(grid=(2, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.sigmoid(x.flatten(1)[:, :3] + self.bias)
        index = torch.arange(3, dtype=x.dtype).expand_as(scores)
        flat = x.flatten(1)[:, :8]
        if hasattr(self, "routing"):
            self.routing.last_coupling = torch.stack([flat, 1 - flat, flat.square()], -1)
        return scores, torch.stack([scores, index], -1)


class _ImageDecoder(nn.Module):
    """Reconstructions: an image filled with the kept class index."""

    def forward(self, poses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return keep.to(poses.dtype).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)


def _multi_item(net: nn.Module) -> MultiItemClassifier:
    return MultiItemClassifier(
        net,
        MarginLoss(recon_weight=0.5),
        sgd(),
        decoder=_ImageDecoder(),
        n_classes=3,
    )


CAPSULE_FIGURES = (
    ReconstructionsCallback(n=2, nrow=2),
    RoutingMapsCallback(),
    PairsFigureCallback(n=2),
)


def test_the_capsule_classifier_gets_reconstructions_and_routing_maps(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Validation batch 0's first n images above their reconstructions (decoded from the
    predicted class), and per image the routing maps of `coupling_rows`, a row of 1 + K."""
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    net = _RoutingNet()
    model = _multi_item(net)
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 2])
    batches = loader([(images, labels), (images[:1], labels[:1])])
    _validate(model, tmp_path, loader=batches, callbacks=CAPSULE_FIGURES)
    grid, nrow = sent.grids["val/reconstructions"]
    predicted = net(images)[0].argmax(-1)
    reconstructions = _ImageDecoder()(torch.zeros(3, 3, 2), predicted)
    torch.testing.assert_close(grid, torch.cat([images[:2], reconstructions[:2]]))
    assert nrow == 2
    rows, nrow = sent.grids["val/routing_coefficients"]
    net(images)  # batch 0's coefficients, not those of the last batch
    coupling = net.routing.last_coupling
    torch.testing.assert_close(rows, coupling_rows(images, coupling, (2, 2)))
    assert nrow == 4


def test_the_capsule_figures_need_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    model = _multi_item(_RoutingNet())
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    run = trainer(logger=False, callbacks=list(CAPSULE_FIGURES))
    run.validate(model, dataloaders=loader([(images, torch.tensor([0, 1, 2]))]), verbose=False)
    assert not sent.grids and not sent.figures


@pytest.mark.parametrize("primary", [True, False])
def test_a_net_without_routing_gets_reconstructions_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path, primary: bool
) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    net = _RoutingNet(routing=False)
    if not primary:  # the CNN baseline has neither
        del net.primary
    model = _multi_item(net)
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    batches = loader([(images, torch.tensor([0, 1, 2]))])
    _validate(model, tmp_path, loader=batches, callbacks=CAPSULE_FIGURES)
    assert set(sent.grids) == {"val/reconstructions"}
    model.decoder = None
    sent.grids.clear()
    _validate(model, tmp_path, loader=batches, callbacks=CAPSULE_FIGURES)
    assert not sent.grids


def test_the_routing_maps_show_at_most_n_images(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    model = _multi_item(_RoutingNet())
    images = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(8))
    batches = loader([(images, torch.arange(10) % 3)])
    _validate(model, tmp_path, loader=batches, callbacks=[RoutingMapsCallback()])
    rows, nrow = sent.grids["val/routing_coefficients"]
    assert rows.shape[0] == 8 * nrow


def test_the_pairs_test_set_sends_the_first_images_titled_with_their_top_two(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    net = _RoutingNet()
    model = _multi_item(net)
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(7))
    pairs = torch.tensor([[0, 1], [1, 2], [0, 2]])
    single = (images, torch.tensor([0, 1, 2]))
    run = trainer(logger=TensorBoardLogger(str(tmp_path)), callbacks=list(CAPSULE_FIGURES))
    later = (torch.zeros(3, 1, 4, 4), pairs)  # a second batch, not shown
    pair_batches = loader([(images, pairs), later])
    run.test(model, dataloaders=[loader([single]), pair_batches], verbose=False)
    figure = sent.figures["test/pairs"]
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 2  # n
    scores = net(images)[0].detach()
    for ax, image, score in zip(shown, images, scores, strict=False):
        np.testing.assert_array_equal(ax.images[0].get_array(), image[0].numpy())
        top = score.topk(2)
        assert ax.get_title() == "\n".join(
            f"{c} {float(s):.2f}" for s, c in zip(top.values, top.indices.tolist(), strict=True)
        )


def test_the_sample_grid_is_the_same_on_every_evaluation_and_refuses_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The grid's samples come from its own seeded noise: two validations send the same images
    whatever the global RNG; a test run sends them as test/samples; 2-d points are refused."""
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    model = _ebm((1, 2, 2), Affine((0.1, 0.2), 0.0))
    images = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    grid = SampleGridCallback(n=4)
    _validate(model, tmp_path, loader=loader([batch(images)]), callbacks=[grid])
    first = sent.grids.pop("val/samples")[0]
    torch.manual_seed(77)
    _validate(model, tmp_path, loader=loader([batch(images)]), callbacks=[grid])
    torch.testing.assert_close(sent.grids["val/samples"][0], first)
    run = trainer(logger=TensorBoardLogger(str(tmp_path)), callbacks=[grid])
    run.test(model, dataloaders=loader([batch(images)]), verbose=False)
    torch.testing.assert_close(sent.grids["test/samples"][0], first)
    with pytest.raises(UserError, match=r"samples \(2,\) points: use callbacks.toy_density"):
        _validate(_ebm((2,), Affine(W, C)), tmp_path, datamodule=_toy(VAL), callbacks=[grid])
    with pytest.raises(UserError, match="needs encode\\(\\) and decode\\(\\), which EBM"):
        _validate(
            model, tmp_path, loader=loader([batch(images)]), callbacks=[LatentSpaceCallback()]
        )


def test_the_vae_gets_its_reconstructions_through_the_same_seeded_posterior_sample(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    sent = Sent(monkeypatch, src.callbacks.image_evaluation)
    model = build_vae()
    x = torch.randint(0, 2, (5, 1, 2, 2), generator=torch.Generator().manual_seed(3)).float()
    batches = loader([(x, torch.zeros(5, dtype=torch.long)), (x[:2], torch.zeros(2).long())])
    grid = ReconstructionsCallback(n=3, nrow=2, seed=9)
    _validate(model, tmp_path, loader=batches, callbacks=[grid])
    images, nrow = sent.grids["val/reconstructions"]
    expected = model(x[:3], torch.Generator().manual_seed(9)).detach()
    torch.testing.assert_close(images, torch.cat([x[:3], expected]))
    assert nrow == 2
