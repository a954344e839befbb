"""Logs FID and KID of a generative model's samples at the end of validation and/or testing.

    callbacks:
      sample_quality:
        _target_: src.callbacks.sample_quality.SampleQualityCallback
        classifier_ckpt: ${paths.root_dir}/assets/fashion_mnist_classifier.ckpt

Works for any model with `sample(n, generator) -> images in [0, 1]` (VAE, WGAN-GP, energy models)
on an image data module with `reference_images(split)` (the split's grey-level images, never
binarised, so binarised and grey-level models are measured against the same reference). Logs
`val/fid`, `val/kid` (fewer samples, every validation epoch) and `test/fid`, `test/kid`,
`test/kid_std`.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from src.metrics.sample_quality import SampleQuality, load_features_for
from src.utils.bounds import NonNegativeInt, PositiveInt
from src.utils.errors import UserError


class SampleQualityCallback(pl.Callback):
    evaluation = True  # eval.py evaluates a checkpoint with it too

    def __init__(
        self,
        classifier_ckpt: str,
        n_test: NonNegativeInt = 10000,
        n_val: NonNegativeInt = 2000,
        kid_subset_size: PositiveInt = 1000,
        seed: int = 0,
    ) -> None:
        self.classifier_ckpt = classifier_ckpt
        self.n = {"val": n_val, "test": n_test}
        self.kid_subset_size, self.seed = kid_subset_size, seed
        self.metrics: dict[str, SampleQuality] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample", None)):
            raise UserError(
                f"callbacks.sample_quality needs a generative model; {type(pl_module).__name__} "
                "has no sample(n, generator): remove the callback."
            )
        datamodule = trainer.datamodule
        if not callable(getattr(datamodule, "reference_images", None)):
            raise UserError(
                f"callbacks.sample_quality measures images; {type(datamodule).__name__} has none."
            )
        self.features = load_features_for(
            self.classifier_ckpt,
            getattr(datamodule, "name", "?"),
            "callbacks.sample_quality.classifier_ckpt",
        )

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        n = self.n[split]
        if n <= 0 or trainer.sanity_checking:
            return
        if split not in self.metrics:
            reference = trainer.datamodule.reference_images(split)[:n]
            metric = SampleQuality(self.features, min(self.kid_subset_size, n))
            metric.to(pl_module.device)
            metric.set_reference(reference.to(pl_module.device))
            self.metrics[split] = metric
        was_training = pl_module.training
        pl_module.eval()
        values = self.metrics[split](pl_module.sample, n, self.seed)
        pl_module.train(was_training)
        names = ("fid", "kid", "kid_std") if split == "test" else ("fid", "kid")
        for name in names:
            pl_module.log(f"{split}/{name}", torch.tensor(values[name]), sync_dist=False)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module, "test")
