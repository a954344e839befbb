"""IDX reading, data discovery and the in-memory image DataModule."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from src.data.idx import read_idx, write_idx
from src.data.image_datamodule import FILES, ImageDataModule, find_idx_dir
from src.utils.errors import UserError
from tests.conftest import FASHION_DIR, needs_fashion, write_fake_mnist


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    array = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    write_idx(tmp_path / f"a{suffix}", array)
    assert torch.equal(read_idx(tmp_path / f"a{suffix}"), array)


def test_idx_reader_matches_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets.mnist import read_image_file

    array = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    write_idx(tmp_path / "images", array)
    assert torch.equal(read_idx(tmp_path / "images"), read_image_file(str(tmp_path / "images")))


def test_corrupt_idx_files_give_clear_errors(tmp_path: Path) -> None:
    write_idx(tmp_path / "a.gz", torch.randint(0, 256, (10, 8, 8), dtype=torch.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    with gzip.open(tmp_path / "truncated.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_idx(tmp_path / "truncated.gz")
    (tmp_path / "bad.gz").write_bytes((tmp_path / "a.gz").read_bytes()[:200])
    with pytest.raises(UserError, match="corrupt"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x03\x04" + raw[4:])
    with pytest.raises(UserError, match="magic"):
        read_idx(tmp_path / "magic")


def test_data_is_found_in_data_dir_and_torchvision_layout(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "MNIST" / "raw")
    assert find_idx_dir("mnist", tmp_path) == tmp_path / "MNIST" / "raw"
    write_fake_mnist(tmp_path)
    assert find_idx_dir("mnist", tmp_path) == tmp_path


def test_missing_data_names_both_ways_to_get_it(tmp_path: Path) -> None:
    dm = ImageDataModule(name="mnist", data_dir=str(tmp_path))
    if find_idx_dir("mnist", tmp_path) is not None:
        pytest.skip("MNIST is installed system-wide here")
    with pytest.raises(UserError, match="apt-get install dataset-mnist") as err:
        dm.prepare_data()
    assert "data.download=true" in str(err.value)


def test_mismatched_files_are_reported(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / f"{FILES['train'][1]}.gz", torch.zeros(5, dtype=torch.uint8))
    with pytest.raises(UserError, match="do not belong together"):
        ImageDataModule(name="mnist", data_dir=str(tmp_path), val_size=100).setup()


def _all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_datamodule_splits_batches_and_binarisation(fake_mnist_dir: Path) -> None:
    def make(**kw) -> ImageDataModule:
        dm = ImageDataModule(
            name="mnist",
            data_dir=str(fake_mnist_dir),
            batch_size=32,
            eval_batch_size=50,
            val_size=100,
            **kw,
        )
        dm.setup()
        return dm

    torch.manual_seed(0)
    dm = make()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert len(dm.train_dataloader()) == 500 // 32  # drop_last in training
    val_x, val_y = _all_batches(dm.val_dataloader())
    assert len(val_y) == 100 and len(_all_batches(dm.test_dataloader())[1]) == 200
    torch.manual_seed(1)  # the validation split does not depend on the run's seed
    assert torch.equal(_all_batches(make().val_dataloader())[0], val_x)
    assert not torch.equal(_all_batches(make(split_seed=7).val_dataloader())[0], val_x)

    torch.manual_seed(0)
    binary = make(binarize=True)
    bx = _all_batches(binary.val_dataloader())[0]
    assert set(bx.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(bx, _all_batches(make(binarize=True).val_dataloader())[0])  # fixed
    # binarisation keeps the grey level as the probability of a 1
    torch.testing.assert_close(bx.mean(), val_x.mean(), atol=0.01, rtol=0)
    ids = list(range(32))
    train = binary.splits["train"]
    first, second = train.__getitems__(ids)[0], train.__getitems__(ids)[0]
    assert not torch.equal(first, second)  # dynamic in training


def test_train_order_follows_the_global_seed(fake_mnist_dir: Path) -> None:
    dm = ImageDataModule(name="mnist", data_dir=str(fake_mnist_dir), batch_size=64, val_size=100)
    dm.setup()
    torch.manual_seed(3)
    a = _all_batches(dm.train_dataloader())[1]
    torch.manual_seed(3)
    b = _all_batches(dm.train_dataloader())[1]
    assert torch.equal(a, b) and not torch.equal(a, _all_batches(dm.train_dataloader())[1])
    assert len(a.unique()) == 10


@needs_fashion
def test_embedded_fashion_mnist() -> None:
    dm = ImageDataModule(name="fashion_mnist", data_dir="/nonexistent", val_size=5000)
    dm.prepare_data()
    dm.setup()
    assert find_idx_dir("fashion_mnist", "/nonexistent") == FASHION_DIR
    assert len(dm.splits["train"]) == 55_000 and len(dm.splits["val"]) == 5000
    assert len(dm.splits["test"]) == 10_000
    counts = torch.bincount(dm.splits["test"].tensors[1], minlength=10)
    assert torch.equal(counts, torch.full((10,), 1000))
    assert dm.classes[9] == "Ankle boot"


def test_failed_download_is_reported_without_a_traceback(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno route to host")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)  # never touch the network
    dm = ImageDataModule(name="mnist", data_dir=str(tmp_path), download=True)
    if find_idx_dir("mnist", tmp_path) is not None:
        pytest.skip("MNIST is installed system-wide here")
    with pytest.raises(UserError, match=r"download of MNIST .* failed \(Error downloading"):
        dm.prepare_data()


def test_single_items_and_batches_agree(fake_mnist_dir: Path) -> None:
    dm = ImageDataModule(name="mnist", data_dir=str(fake_mnist_dir), val_size=100)
    dm.setup()
    test = dm.splits["test"]
    x, y = test.__getitems__([3, 7])
    for row, i in enumerate((3, 7)):
        xi, yi = test[i]
        assert torch.equal(xi, x[row]) and yi == y[row] and xi.shape == (1, 28, 28)


def test_the_loaders_reseed_is_torch_manual_seed_on_the_cpu() -> None:
    """`ResumableTraining` reseeds the global RNG per step with the CPU generator alone (and
    CUDA's when in use): the same stream as `torch.manual_seed`, which the model's noise draws
    from."""
    from src.data.resumable import reseed_global

    draws = []
    for reseed in (torch.manual_seed, reseed_global):
        torch.randn(5)  # whatever state came before
        reseed(2**40 + 17)
        draws.append((torch.randn(3), torch.rand(2), torch.randint(100, (4,)), torch.randperm(6)))
    for a, b in zip(*draws, strict=True):
        assert torch.equal(a, b)
    reseed_global(3)
    assert not torch.equal(torch.randn(3), draws[0][0])


@pytest.mark.parametrize("binarize", [False, True])
def test_training_images_are_grey_unless_binarised(tmp_path: Path, binarize: bool) -> None:
    write_fake_mnist(tmp_path)
    dm = ImageDataModule(name="mnist", data_dir=str(tmp_path), val_size=100, binarize=binarize)
    dm.setup("fit")
    x = next(iter(dm.train_dataloader()))[0]
    grey = ((x > 0) & (x < 1)).any()
    assert bool(grey) != binarize and float(x.min()) >= 0 and float(x.max()) <= 1
