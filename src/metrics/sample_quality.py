"""Sample quality of generative models in a trained classifier's feature space (FID and KID).

No Inception weights are available offline, so the features are the penultimate layer of the
framework's own classifier (`model=classifier`, shipped as assets/fashion_mnist_classifier.ckpt).
With features f of real images (mean m_r, covariance C_r) and of generated ones (m_g, C_g):

    FID = |m_r - m_g|^2 + tr(C_r + C_g - 2 (C_r C_g)^{1/2})      (Heusel et al. 2017)
    KID = unbiased MMD^2 with the kernel k(a, b) = (a . b / d + 1)^3  (Binkowski et al. 2018)

computed by torchmetrics. The numbers are comparable between models measured with the same
classifier checkpoint and the same number of samples, not with Inception-based FIDs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from src.utils.bounds import PositiveInt
from src.utils.errors import UserError

SampleFn = Callable[[int, torch.Generator], torch.Tensor]


class ClassifierFeatures(nn.Module):
    """A frozen classifier net's `features(x)`, always in eval mode (no dropout)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.num_features = int(net.feature_dim)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(images.float())


def load_features(ckpt_path: str | Path) -> tuple[ClassifierFeatures, str]:
    """(feature extractor, name of the dataset it was trained on) from a classifier checkpoint."""
    from src.utils.checkpoint import load_model, read_checkpoint, run_config

    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(
            f"classifier checkpoint {ckpt_path} not found: use the shipped "
            "assets/fashion_mnist_classifier.ckpt or train one (experiment=classifier_fmnist)."
        )
    ckpt = read_checkpoint(path)
    cfg = run_config(path, ckpt)
    net = getattr(load_model(path, cfg, ckpt), "net", None)
    if not hasattr(net, "features"):
        raise UserError(f"{ckpt_path} is not a classifier with features(): train model=classifier.")
    return ClassifierFeatures(net), str(cfg.data.get("name", "?"))


def load_features_for(ckpt_path: str | Path, data_name: str, option: str) -> ClassifierFeatures:
    """`load_features`, refusing a classifier trained on other data than `data_name`; `option`
    is the setting that names the checkpoint, for the error message."""
    features, trained_on = load_features(ckpt_path)
    if trained_on != data_name:
        raise UserError(
            f"the classifier {ckpt_path} was trained on {trained_on}, the data is {data_name}: "
            f"train one (model=classifier data={data_name}) and pass {option}=<its checkpoint>."
        )
    return features


class SampleQuality(nn.Module):
    """FID and KID of generated images against a fixed set of real images."""

    def __init__(
        self,
        features: ClassifierFeatures,
        kid_subset_size: PositiveInt = 1000,
        kid_subsets: PositiveInt = 100,
    ) -> None:
        super().__init__()
        self.fid = FrechetInceptionDistance(feature=features, reset_real_features=False)
        with warnings.catch_warnings():  # it keeps all features: 10000 x 128 here, a few MB
            warnings.filterwarnings("ignore", message=".*will save all extracted features")
            self.kid = KernelInceptionDistance(
                feature=features,
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
            )
        self.has_reference = False

    def set_reference(self, images: torch.Tensor, batch_size: int = 500) -> None:
        for chunk in images.split(batch_size):
            self.fid.update(chunk, real=True)
            self.kid.update(chunk, real=True)
        self.has_reference = True

    def forward(
        self, sample: SampleFn, n: int, seed: int = 0, batch_size: int = 500
    ) -> dict[str, float]:
        """`fid`, `kid` (mean over subsets) and `kid_std` of n samples drawn by `sample`."""
        if not self.has_reference:
            raise RuntimeError("set_reference(real images) before measuring samples")
        self.fid.reset()
        self.kid.reset()
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, n, batch_size):
            images = sample(min(batch_size, n - start), generator).clamp(0, 1)
            device = self.fid.real_features_sum.device
            self.fid.update(images.to(device), real=False)
            self.kid.update(images.to(device), real=False)
        self.kid.subset_size = min(self.kid.subset_size, n)
        kid_mean, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}
