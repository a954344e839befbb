"""The multilabel classifier (src/models/multilabel.py): its set metrics against scikit-learn,
the epoch aggregation of a test run, training data of two-item images, every multilabel
experiment end to end, and the refusal of a loss that does not fit."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn

from src.data.batches import TensorBatches, batch_loader
from src.data.image_datamodule import ImageDataModule
from src.losses.multilabel import MultilabelCE
from src.models.components.capsnets import CNNLogits, CNNSigmoid
from src.models.multilabel import MultilabelClassifier, multi_hot, set_metrics
from src.train import build, train
from src.utils.errors import UserError
from tests.conftest import needs_fashion, write_fake_mnist

K = 10


def _predictions(seed: int, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, K) and label pairs (n, 2) of different classes."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, K, generator=gen) - 1.0
    first = torch.randint(K, (n,), generator=gen)
    second = (first + torch.randint(1, K, (n,), generator=gen)) % K
    return logits, torch.stack([first, second], dim=1)


def test_multi_hot_of_single_labels_and_pairs() -> None:
    assert torch.equal(
        multi_hot(torch.tensor([2, 0]), 4), torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0.0]])
    )
    pairs = multi_hot(torch.tensor([[1, 3], [0, 2]]), 4)
    assert torch.equal(pairs, torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0.0]]))


def test_set_metrics_match_a_hand_count_and_scikit_learn() -> None:
    predicted = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]).bool()
    targets = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 1.0]])
    metrics = set_metrics(predicted, targets)
    assert metrics["exact"].item() == pytest.approx(0.25)
    # per image 2|P & Y| / (|P| + |Y|): 1, 2/3, 0, 0
    assert metrics["sample_f1"].item() == pytest.approx((1 + 2 / 3) / 4)
    logits, pairs = _predictions(seed=1)
    predicted, targets = logits > 0, multi_hot(pairs, K)
    expected = f1_score(targets.numpy(), predicted.numpy(), average="samples", zero_division=0)
    assert set_metrics(predicted, targets)["sample_f1"].item() == pytest.approx(expected)


class Logits(nn.Module):
    """A "net" whose images are already the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_test_run_aggregates_the_metrics_over_uneven_batches_like_scikit_learn() -> None:
    """Micro F1 is a ratio of counts over the whole set, not a mean of batch F1s: batches of
    7 over 40 examples would give a different number (and single items and pairs are logged
    apart)."""
    model = MultilabelClassifier(Logits(), MultilabelCE(), partial(torch.optim.SGD, lr=0.1))
    logits, pairs = _predictions(seed=2)
    singles = pairs[:, 0]
    loaders = [
        batch_loader(TensorBatches(logits, singles), batch_size=7, train=False),
        batch_loader(TensorBatches(logits, pairs), batch_size=7, train=False),
    ]
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.test(model, dataloaders=loaders, verbose=False)
    got = {**metrics[0], **metrics[1]}
    predicted = (logits > 0).numpy()
    for prefix, labels in (("", singles), ("pairs_", pairs)):
        y = multi_hot(labels, K).numpy()
        assert got[f"test/{prefix}f1"] == pytest.approx(f1_score(y, predicted, average="micro"))
        exact = float((predicted == y).all(-1).mean())
        assert got[f"test/{prefix}exact"] == pytest.approx(exact)
        sample_f1 = f1_score(y, predicted, average="samples", zero_division=0)
        assert got[f"test/{prefix}sample_f1"] == pytest.approx(sample_f1, abs=1e-6)
    top2 = logits.topk(2).indices.sort(-1).values == pairs.sort(-1).values
    assert got["test/pairs_top2"] == pytest.approx(top2.all(-1).float().mean().item())


def test_cnn_sigmoid_is_the_sigmoid_of_cnn_logits_with_the_same_weights() -> None:
    torch.manual_seed(0)
    sigmoid_net, logits_net = CNNSigmoid(width=8), CNNLogits(width=8)
    logits_net.load_state_dict(sigmoid_net.state_dict())
    x = torch.rand(3, 1, 56, 28)
    scores, poses = sigmoid_net(x)
    assert poses is None
    torch.testing.assert_close(scores, torch.sigmoid(logits_net(x)))


def test_pairs_train_turns_train_and_val_into_two_item_images(tmp_path: Path) -> None:
    data_dir = write_fake_mnist(tmp_path / "mnist", n_train=300, n_test=50)
    make = partial(ImageDataModule, "mnist", str(data_dir), 32, val_size=100, stacked_pairs=20)
    plain, pairs = make(), make(pairs_train=True)
    plain.setup(), pairs.setup()
    for split in ("train", "val"):
        images, labels = pairs.splits[split].tensors
        assert images.shape == (len(plain.splits[split]), 1, 56, 28) and labels.shape[1] == 2
        assert (labels[:, 0] != labels[:, 1]).all()
        # every half is an item of the same split with its label
        items = {
            bytes(x.numpy()): int(y) for x, y in zip(*plain.splits[split].tensors, strict=True)
        }
        assert items[bytes(images[0, :, :28].numpy())] == labels[0, 0]
        assert items[bytes(images[0, :, 28:].numpy())] == labels[0, 1]
    for split in ("test", "test_pairs"):
        assert all(
            torch.equal(a, b)
            for a, b in zip(plain.splits[split].tensors, pairs.splits[split].tensors, strict=True)
        )
    batch = next(iter(pairs.train_dataloader()))
    assert batch[0].dtype == torch.float32 and batch[0].max() <= 1 and batch[1].shape[1] == 2


@needs_fashion
@pytest.mark.parametrize(
    "experiment",
    [
        "multilabel_ce_pairs",
        "multilabel_bce_pairs",
        "multilabel_smooth_f1_pairs",
        "ema_multilabel_pairs",
    ],
)
def test_smoke_fast_dev_run_every_multilabel_experiment(make_cfg, experiment: str) -> None:
    cfg = make_cfg(
        f"experiment={experiment}",
        "trainer.fast_dev_run=true",
        "data.batch_size=16",
        "data.eval_batch_size=64",
        "data.stacked_pairs=64",
        "model.net.width=8",
    )
    metrics = train(cfg)
    keys = ["train/loss", "val/exact", "val/f1", "test/pairs_exact", "test/pairs_f1"]
    for key in [*keys, "test/pairs_top2", "test/pairs_sample_f1", "test/exact"]:
        assert math.isfinite(metrics[key]), key


@pytest.mark.parametrize(
    ("model", "loss", "needs"),
    [
        (
            "multilabel_cnn",
            "margin",
            "does not fit MultilabelClassifier, which needs a 'multilabel'",
        ),
        ("cnn_sigmoid", "multilabel_ce", "does not fit MultiItemClassifier"),
        ("vae", "smooth_f1", "does not fit VAE, which needs a 'vae' loss"),
        ("nce_density", "multilabel_ce", "does not fit NCEDensity, which needs a 'density'"),
        ("multilabel_cnn", "nce", "does not fit MultilabelClassifier"),
    ],
)
def test_a_loss_for_another_kind_of_model_is_refused(
    make_cfg, model: str, loss: str, needs: str
) -> None:
    with pytest.raises(UserError, match=needs):
        build(make_cfg(f"model={model}", f"loss={loss}"))


@pytest.mark.parametrize("loss", ["multilabel_ce", "bce", "smooth_f1", "soft_accuracy"])
def test_every_multilabel_loss_config_fits_the_classifier(make_cfg, loss: str) -> None:
    _, model = build(make_cfg("model=multilabel_cnn", f"loss={loss}"))
    logits = torch.tensor([[8.0, -8.0, 8.0], [-8.0, 8.0, -8.0]])
    right = model.loss(logits, torch.tensor([[1, 0, 1], [0, 1, 0.0]]))["loss"]
    wrong = model.loss(logits, torch.tensor([[0, 1, 0], [1, 0, 1.0]]))["loss"]
    assert right.item() < 0.01 < wrong.item()
