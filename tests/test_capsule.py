"""Capsules: squash, routing against a hand-written loop, margin loss, stacked pairs, training."""

from __future__ import annotations

import math

import hydra
import pytest
import torch

from src.data.batches import TensorBatches, batch_loader
from src.data.image_datamodule import stack_pairs
from src.losses.margin import MarginLoss, margin_loss
from src.models.components.capsnets import CNNSigmoid, SabourCapsNet, SmallCapsNet
from src.models.components.capsule import PrimaryCapsules, Routing, squash
from src.train import build, train
from src.utils.errors import UserError
from tests.conftest import needs_fashion


@pytest.mark.parametrize("constant", [1.0, 0.5])
def test_squash_shrinks_below_one_keeps_direction_and_is_monotone(constant: float) -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(100, 16, generator=gen, dtype=torch.float64) * 5
    v = squash(s, constant=constant)
    torch.testing.assert_close(v, torch.stack([squash_by_formula(row, constant) for row in s]))
    assert (v.norm(dim=-1) < 1).all()
    cosine = torch.nn.functional.cosine_similarity(s, v, dim=-1)
    torch.testing.assert_close(cosine, torch.ones(100, dtype=torch.float64))
    scales = torch.linspace(0.01, 20, 200, dtype=torch.float64)[:, None]
    lengths = squash(scales * s[:1], constant=constant).norm(dim=-1)
    assert (lengths.diff() > 0).all()
    unit = torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # |s| = 1: length 1 / (c + 1)
    assert squash(unit, constant=constant).norm().item() == pytest.approx(1 / (constant + 1))


def squash_by_formula(s: torch.Tensor, constant: float) -> torch.Tensor:
    """One capsule's squash written from the formula (kexue.fm/archives/4819), independent of
    the production `squash`: |s|^2 / (constant + |s|^2) * s / |s|."""
    norm2 = float(sum(x * x for x in s.tolist()))
    return s * (norm2 / (constant + norm2) / math.sqrt(norm2))


def routing_by_loops(layer: Routing, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing spelt out with Python loops over examples, inputs i and outputs j."""
    w = layer.weight.detach()
    batch, n, _ = u.shape
    out_caps = layer.out_caps
    v_all, c_all = [], []
    for b in range(batch):
        u_hat = [
            [(w[j] if layer.shared_weights else w[i, j]).T @ u[b, i] for j in range(out_caps)]
            for i in range(n)
        ]
        logits = [[0.0] * out_caps for _ in range(n)]
        for r in range(layer.iterations):
            c = [torch.tensor(row, dtype=u.dtype).softmax(0) for row in logits]  # over outputs j
            s = [sum(c[i][j] * u_hat[i][j] for i in range(n)) for j in range(out_caps)]
            if r == layer.iterations - 1:
                v = [squash_by_formula(s_j, layer.squash_constant) for s_j in s]
                break
            for j in range(out_caps):
                if layer.revised:
                    direction = s[j] / s[j].norm()
                    for i in range(n):
                        logits[i][j] = float(u_hat[i][j] @ direction)
                else:
                    v_j = squash_by_formula(s[j], layer.squash_constant)
                    for i in range(n):
                        logits[i][j] += float(u_hat[i][j] @ v_j)
        v_all.append(torch.stack(v))
        c_all.append(torch.stack(c))
    return torch.stack(v_all), torch.stack(c_all)


@pytest.mark.parametrize(
    ("shared", "revised", "constant"), [(True, False, 1.0), (False, False, 1.0), (True, True, 0.5)]
)
def test_routing_equals_the_hand_written_loop(shared: bool, revised: bool, constant: float) -> None:
    torch.manual_seed(0)
    layer = Routing(
        4, 3, 5, 3, shared_weights=shared, in_caps=6, revised=revised, squash_constant=constant
    ).double()
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    v = layer(u)
    v_loop, c_loop = routing_by_loops(layer, u)
    torch.testing.assert_close(v, v_loop)
    torch.testing.assert_close(layer.last_coupling, c_loop)
    # coupling coefficients sum to 1 over OUTPUT capsules, not over inputs
    torch.testing.assert_close(layer.last_coupling.sum(-1), torch.ones(2, 6, dtype=torch.float64))
    assert not torch.allclose(layer.last_coupling.sum(1), torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("revised", [False, True])
def test_shared_weight_routing_ignores_the_order_of_its_inputs(revised: bool) -> None:
    torch.manual_seed(1)
    layer = Routing(8, 10, 16, 3, shared_weights=True, revised=revised)
    u = torch.randn(4, 50, 8)
    permuted = u[:, torch.randperm(50)]
    torch.testing.assert_close(layer(u), layer(permuted), rtol=1e-5, atol=1e-6)
    assert layer(torch.randn(4, 7, 8)).shape == (4, 10, 16)  # any number of inputs


def test_detached_iterations_keep_the_forward_and_cut_the_routing_gradient() -> None:
    torch.manual_seed(2)
    plain = Routing(4, 3, 5, 3, shared_weights=True)
    cut = Routing(4, 3, 5, 3, shared_weights=True, detach_iterations=True)
    cut.load_state_dict(plain.state_dict())
    u = torch.randn(2, 6, 4)
    torch.testing.assert_close(plain(u), cut(u))
    g_plain = torch.autograd.grad(plain(u).sum(), plain.weight)[0]
    g_cut = torch.autograd.grad(cut(u).sum(), cut.weight)[0]
    assert not torch.allclose(g_plain, g_cut)


def test_per_input_weights_need_their_number_of_inputs() -> None:
    layer = Routing(8, 10, 16, shared_weights=False, in_caps=12)
    with pytest.raises(ValueError, match="per-input weights for 12 input capsules, got 20"):
        layer(torch.randn(1, 20, 8))


def test_shapes_on_single_and_stacked_images() -> None:
    small, cnn = SmallCapsNet(), CNNSigmoid()
    assert 260_000 < sum(p.numel() for p in small.parameters()) < 290_000  # the author's ~270k
    for shape in [(3, 1, 28, 28), (3, 1, 56, 28)]:
        x = torch.rand(shape)
        scores, poses = small(x)
        assert scores.shape == (3, 10) and poses.shape == (3, 10, 16)
        assert ((scores >= 0) & (scores < 1)).all()
        assert cnn(x)[0].shape == (3, 10)
    assert small.primary.grid == (28, 14)
    sabour = SabourCapsNet(conv_channels=16, n_maps=4)
    assert sabour(torch.rand(2, 1, 28, 28))[0].shape == (2, 10)
    assert sabour.routing.in_caps == 4 * 6 * 6
    with pytest.raises(ValueError, match="shared_weights=True"):
        sabour(torch.rand(2, 1, 56, 28))
    primary = PrimaryCapsules(16, capsule_dim=8, n_maps=4, kernel_size=9, stride=2)
    caps = primary(torch.randn(2, 16, 20, 20))
    assert caps.shape == (2, 4 * 6 * 6, 8) and (caps.norm(dim=-1) < 1).all()


def test_margin_loss_by_hand() -> None:
    scores = torch.tensor([[0.95, 0.5, 0.05], [0.2, 0.3, 0.8]])
    targets = torch.tensor([[1.0, 0, 0], [0, 0, 1]])
    # row 1: present 0 (0.95 > 0.9); absent 0.5 * (0.4^2 + 0) ; row 2: present 0.1^2, absent
    expected = torch.tensor([0.5 * 0.16, 0.01 + 0.5 * (0.1**2 + 0.2**2)])
    torch.testing.assert_close(margin_loss(scores, targets), expected)
    torch.testing.assert_close(
        margin_loss(scores, targets, lam=0.25), torch.tensor([0.04, 0.01 + 0.25 * 0.05])
    )
    terms = MarginLoss(recon_weight=0.5)(
        scores, targets, torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    )
    assert terms["recon"].item() == pytest.approx(4.0)
    assert terms["loss"].item() == pytest.approx(expected.mean().item() + 2.0)
    with pytest.raises(ValueError, match="m_minus < m_plus"):
        MarginLoss(m_plus=0.1, m_minus=0.9)


def test_stacked_pairs_are_two_different_classes_and_deterministic() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 10
    images = torch.randint(0, 255, (300, 1, 28, 28), generator=gen, dtype=torch.uint8)
    pairs, pair_labels = stack_pairs(images, labels, 2000, seed=3)
    assert pairs.shape == (2000, 1, 56, 28) and pair_labels.shape == (2000, 2)
    assert (pair_labels[:, 0] != pair_labels[:, 1]).all()
    again = stack_pairs(images, labels, 2000, seed=3)
    assert torch.equal(pairs, again[0]) and torch.equal(pair_labels, again[1])
    assert not torch.equal(pair_labels, stack_pairs(images, labels, 2000, seed=4)[1])
    # each half is one of the source images with the stated label
    index = {bytes(img.numpy()): int(lab) for img, lab in zip(images, labels, strict=True)}
    for pair, (top, bottom) in zip(pairs[:50], pair_labels[:50], strict=True):
        assert index[bytes(pair[:, :28].numpy())] == top
        assert index[bytes(pair[:, 28:].numpy())] == bottom
    # all 90 ordered class pairs show up, each about 2000 / 90 = 22 times (Poisson, sd 4.7)
    counts = torch.bincount(pair_labels[:, 0] * 10 + pair_labels[:, 1], minlength=100).view(10, 10)
    off_diagonal = counts[~torch.eye(10, dtype=torch.bool)]
    assert counts.diagonal().sum() == 0 and off_diagonal.min() >= 8 and off_diagonal.max() <= 40


CAPSULE_FAST = [
    "trainer.fast_dev_run=true",
    "data.eval_batch_size=64",
    "data.batch_size=32",
    "data.stacked_pairs=64",
]


@needs_fashion
@pytest.mark.parametrize("model", ["capsnet", "capsnet_small", "cnn_sigmoid"])
def test_smoke_fast_dev_run_every_capsule_model(make_cfg, model: str) -> None:
    if model == "capsnet":  # one image size only: no pairs
        with pytest.raises(UserError, match="not the 56x28 pairs: use model=capsnet_small"):
            train(make_cfg(f"model={model}", *CAPSULE_FAST))
        metrics = train(make_cfg(f"model={model}", *CAPSULE_FAST, "data.stacked_pairs=0"))
        assert math.isfinite(metrics["test/recon"]) and math.isfinite(metrics["test/acc"])
        return
    metrics = train(make_cfg(f"model={model}", *CAPSULE_FAST))
    for key in ("train/loss", "val/acc", "test/acc", "test/pairs_top2", "test/pairs_both_above"):
        assert math.isfinite(metrics[key]), key


@needs_fashion
def test_capsule_net_overfits_64_images(make_cfg) -> None:
    """Fits, far above chance (0.1): over seeds 1-6 with 1 and 2 torch threads (torch 2.14.1) the
    training accuracy after 250 epochs was 0.92-1.0 (1.0 in 10 of 12 runs)."""
    cfg = make_cfg(
        "model=capsnet_small",
        "model.net.width=16",
        "model.optimizer.lr=0.002",
        "trainer.max_epochs=250",
        "trainer.limit_val_batches=0",
        "logger=csv",
        "callbacks=none",
    )
    datamodule, model = build(cfg)
    datamodule.setup()
    images, labels = datamodule.splits["train"].__getitems__(list(range(64)))
    loader = batch_loader(TensorBatches(images, labels), batch_size=64, train=True)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, train_dataloaders=loader)
    model.eval()
    with torch.no_grad():
        scores, _ = model(images)
    assert (scores.argmax(-1) == labels).float().mean().item() >= 0.8
