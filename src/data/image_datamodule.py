"""MNIST-family image data held in memory and served by index.

The IDX files are read once into uint8 tensors; a batch is one tensor indexing operation, so
there is no per-sample Python work (no PIL, no per-item transform). The validation split is
fixed by its own seed, independent of the run's seed, so runs with different seeds are compared on
the same images. With `pairs_train=True` the training and validation splits are two-item images
(`stack_pairs` of their own items, as many as the split has items) for multilabel classifiers.
With `binarize=True` the training pixels are resampled as Bernoulli(pixel) for
every batch (dynamic binarisation) and validation/test pixels are binarised once with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from src.data.batches import TensorBatches, batch_loader
from src.data.idx import read_idx
from src.utils.bounds import NonNegativeInt, PositiveInt
from src.utils.errors import UserError

DATASETS = {
    # name: (torchvision class name, directory of a Debian package)
    "fashion_mnist": ("FashionMNIST", "/usr/share/datasets/fashion-mnist"),
    "mnist": ("MNIST", "/usr/share/datasets/mnist"),
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = {
    "fashion_mnist": [
        "T-shirt",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "mnist": [str(i) for i in range(10)],
}


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(name: str, data_dir: str | Path) -> Path | None:
    """The first directory with all four IDX files: data_dir, torchvision's layout, Debian's."""
    tv_name, system_dir = DATASETS[name]
    data_dir = Path(data_dir)
    for directory in (data_dir, data_dir / name, data_dir / tv_name / "raw", Path(system_dir)):
        if all(_find(directory, stem) for pair in FILES.values() for stem in pair):
            return directory
    return None


def to_unit_interval(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1] (float images pass through); draws no noise."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def random_bytes(k: int, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    """(k, *shape) independent uniform bytes, eight from each full-range 64-bit draw."""
    n = k * shape.numel()
    words = torch.empty((n + 7) // 8, dtype=torch.int64)
    words.random_(-(2**63), None, generator=generator)  # the full range: all 64 bits uniform
    return words.view(torch.uint8)[:n].view(k, *shape)


def dynamic_binarisation(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each pixel resampled as Bernoulli(grey level), anew every time.

    A uint8 grey level g is compared with random bytes b1, b2, b3: a 1 when b1 < g, or b1 = 255
    and b2 < g, or b1 = b2 = 255 and b3 < g, which has probability
    (g / 256)(1 + 256^-1 + 256^-2) = (g / 255)(1 - 256^-3): exact at g = 0 and within float32's
    resolution (2^-24) of g / 255 elsewhere, at a third of the time of one float uniform per pixel.
    Float images in [0, 1] are compared with float uniforms (u < p: a 1 with probability p)."""
    if images.dtype != torch.uint8:
        return (torch.rand(images.shape, generator=generator) < images).to(images.dtype)
    b = random_bytes(3, images.shape, generator)
    below = torch.lt(b, images).view(torch.uint8)
    full = torch.eq(b[:2], torch.full_like(b[:2], 255)).view(torch.uint8)
    bits = below[2].bitwise_and_(full[1]).bitwise_or_(below[1])
    return bits.bitwise_and_(full[0]).bitwise_or_(below[0]).float()


def stack_pairs(
    images: torch.Tensor, labels: torch.Tensor, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` two-item images (the author's capsule test, kexue.fm/archives/4819): two images of
    DIFFERENT classes stacked vertically, (n, C, 2H, W), with their labels (n, 2) top first.
    The same `seed` gives the same pairs."""
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(len(labels), (n,), generator=gen)
    bottom = torch.randint(len(labels), (n,), generator=gen)
    while bool((same := labels[top] == labels[bottom]).any()):
        bottom[same] = torch.randint(len(labels), (int(same.sum()),), generator=gen)
    pairs = torch.cat([images[top], images[bottom]], dim=-2)
    return pairs, torch.stack([labels[top], labels[bottom]], dim=1)


class ImageDataModule(LightningDataModule):
    """Fashion-MNIST or MNIST from IDX files: `data_dir`, else Debian's package, else download."""

    def __init__(
        self,
        name: str = "fashion_mnist",
        data_dir: str = "data/",
        batch_size: PositiveInt = 256,
        eval_batch_size: PositiveInt = 256,
        val_size: NonNegativeInt = 5000,
        split_seed: int = 12345,
        binarize: bool = False,
        download: bool = False,
        num_workers: NonNegativeInt = 0,
        stacked_pairs: NonNegativeInt = 0,
        pairs_seed: int = 0,
        pairs_train: bool = False,
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise UserError(f"data.name={name!r} is unknown; available: {', '.join(DATASETS)}.")
        self.save_hyperparameters(logger=False)
        self.name, self.data_dir = name, Path(data_dir)
        self.splits: dict[str, TensorBatches] = {}
        self.reference: dict[str, torch.Tensor] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def example_shape(self) -> tuple[int, int, int]:
        """One training example's shape: two-item images are twice as tall."""
        c, h, w = self.image_shape
        return (c, 2 * h, w) if self.hparams.pairs_train else (c, h, w)

    @property
    def classes(self) -> list[str]:
        return CLASSES[self.name]

    def prepare_data(self) -> None:
        if find_idx_dir(self.name, self.data_dir) is not None:
            return
        tv_name, system_dir = DATASETS[self.name]
        if not self.hparams.download:
            raise UserError(
                f"{tv_name} IDX files not found in {self.data_dir} nor {system_dir}. Either "
                "install "
                f"them (Debian: apt-get install dataset-{self.name.replace('_', '-')}) or copy the "
                f"four *-ubyte.gz files into {self.data_dir}, or pass data.download=true to let "
                "torchvision download them (needs internet)."
            )
        import torchvision

        try:
            getattr(torchvision.datasets, tv_name)(str(self.data_dir), download=True)
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"download of {tv_name} into {self.data_dir} failed ({reason}). Without internet, "
                f"copy the four *-ubyte.gz files into {self.data_dir} instead."
            ) from None

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        directory = find_idx_dir(self.name, self.data_dir)
        if directory is None:
            self.prepare_data()
            directory = find_idx_dir(self.name, self.data_dir)
        images_stem, labels_stem = FILES[split]
        images = read_idx(_find(directory, images_stem))
        labels = read_idx(_find(directory, labels_stem)).long()
        if images.ndim != 3 or len(images) != len(labels):
            raise UserError(
                f"{directory}: {images_stem} holds {tuple(images.shape)} but {labels_stem} "
                f"{tuple(labels.shape)}; the files do not belong together. Fetch them again."
            )
        return images.unsqueeze(1), labels

    def _fixed_binarisation(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.bernoulli(images.float() / 255.0, generator=gen)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = self._load("train")
        val_size = self.hparams.val_size
        if not 0 < val_size < len(labels):
            raise UserError(f"data.val_size={val_size} must be between 1 and {len(labels) - 1}.")
        perm = torch.randperm(
            len(labels), generator=torch.Generator().manual_seed(self.hparams.split_seed)
        )
        train_idx, val_idx = perm[val_size:], perm[:val_size]
        test_images, test_labels = self._load("test")
        binarize = self.hparams.binarize
        val_images, test_images = images[val_idx], test_images
        self.reference = {"val": val_images, "test": test_images}
        if binarize:
            val_images = self._fixed_binarisation(val_images, self.hparams.split_seed + 1)
            test_images = self._fixed_binarisation(test_images, self.hparams.split_seed + 2)
        train_transform = dynamic_binarisation if binarize else to_unit_interval
        self.splits = {
            "train": TensorBatches(images[train_idx], labels[train_idx], transform=train_transform),
            "val": TensorBatches(val_images, labels[val_idx], transform=to_unit_interval),
            "test": TensorBatches(test_images, test_labels, transform=to_unit_interval),
        }
        if self.hparams.stacked_pairs:
            pairs = stack_pairs(
                test_images, test_labels, self.hparams.stacked_pairs, self.hparams.pairs_seed
            )
            self.splits["test_pairs"] = TensorBatches(*pairs, transform=to_unit_interval)
        if self.hparams.pairs_train:
            for offset, split in enumerate(("train", "val"), start=1):
                items = self.splits[split]
                pairs = stack_pairs(*items.tensors, len(items), self.hparams.pairs_seed + offset)
                self.splits[split] = TensorBatches(*pairs, transform=items.transform)

    def reference_images(self, split: str) -> torch.Tensor:
        """The val or test images in [0, 1], never binarised: what generated samples are
        measured against (src/callbacks/sample_quality.py)."""
        self.setup()
        return to_unit_interval(self.reference[split])

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        batch_size = self.hparams.batch_size if train else self.hparams.eval_batch_size
        return batch_loader(self.splits[split], batch_size, train, None, self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test split; with `stacked_pairs`, also the two-item images (dataloader 1)."""
        if "test_pairs" in self.splits:
            return [self._loader("test"), self._loader("test_pairs")]
        return self._loader("test")
