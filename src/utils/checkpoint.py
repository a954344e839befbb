"""Checkpoints: written atomically, read back weights-only and checked (evaluation, sampling,
resume); and what makes a run resumable mid-epoch with the same result as an uninterrupted
one."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from src.utils.errors import UserError
from src.utils.files import write_atomically
from src.utils.trust import check_plain_data, check_run_config


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """The checkpoint's dictionary, loaded weights-only and checked as data from a stranger (see
    `src.utils.trust`); a one-line UserError when it is not a safe, readable checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist: point it at a .ckpt file of a run.")
    size = path.stat().st_size
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not for the user
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} is not a readable checkpoint: it holds objects other than tensors and "
            "plain containers, or is no checkpoint at all, and unpickling those could run code, "
            "so it is refused. Use a checkpoint written by train.py."
        ) from None
    except Exception:
        raise UserError(
            f"{path} is not a readable checkpoint: empty, truncated or corrupt ({size} bytes). "
            "Use another checkpoint of the run, e.g. last.ckpt."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(
            f"{path} holds no model weights (no state_dict): it is not a Lightning checkpoint."
        )
    check_plain_data(ckpt.get("model_kwargs", {}), str(path), "model_kwargs")
    if "run_config" in ckpt:
        check_run_config(ckpt["run_config"], f"{path}: run_config")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic in the checkpoint's own folder: a temporary
    file, then a rename. (Lightning's own goes through a temporary file in /tmp and a move,
    which a full disk can cut short under the real name.)"""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: torch.save(checkpoint, file))


def run_config(ckpt_path: str | Path, ckpt: dict[str, Any]) -> DictConfig:
    """The config of the run that wrote the checkpoint: its run directory's, else its copy;
    checked like the checkpoint itself, and with data downloads switched off (a saved config is
    never followed to the network)."""
    cfg = None
    for parent in Path(ckpt_path).resolve().parents[:3]:
        saved = parent / ".hydra" / "config.yaml"
        if saved.is_file():
            cfg = OmegaConf.load(saved)
            check_run_config(cfg, str(saved))
            break
    else:
        if "run_config" in ckpt:
            cfg = OmegaConf.create(ckpt["run_config"])
    if cfg is None:
        raise UserError(
            f"no config found for {ckpt_path}: neither a .hydra/config.yaml in its run directory "
            "nor a copy inside the checkpoint. Evaluate a checkpoint written by train.py."
        )
    if OmegaConf.select(cfg, "data.download"):
        cfg.data.download = False
    return cfg


def load_model(ckpt_path: str | Path, cfg: DictConfig, ckpt: dict[str, Any]) -> Any:
    """Instantiate the run's model from `cfg` and load the checkpoint's weights into it."""
    from src.utils.config import check_types
    from src.utils.instantiate import instantiate

    check_types(cfg.model, "model")
    model = instantiate(cfg.model, **ckpt.get("model_kwargs", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UserError(
            f"{ckpt_path} does not fit the run's model config ({str(err).splitlines()[0]}). "
            "Was the config edited after training?"
        ) from None
    return model.eval()


def _seed(*words: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers."""
    return int(np.random.SeedSequence([w % 2**63 for w in words]).generate_state(2, np.uint64)[0])


class ResumableLoader(DataLoader):
    """A DataLoader whose randomness is indexed by position, so training resumes exactly mid-epoch.

    Epoch e is shuffled after the global torch RNG is seeded with (base, e), and batch i of it is
    drawn right after the RNG is seeded with (base, e, i, rank): the order, the data's noise
    (dynamic binarisation) and the model's noise in the steps that follow depend on the position
    alone, not on what ran before (a sanity check, a restart). Lightning stores `state_dict()` in
    each checkpoint and hands it back through `load_state_dict` on resume (its `_Stateful`
    protocol); `ResumableTraining` tells the loader how many batches of the epoch were trained, and
    the resumed loader replays the epoch's order from the first batch not trained. Exact with
    num_workers=0 (workers draw their own noise). Under DDP, Lightning rebuilds it with a
    DistributedSampler, which shuffles by (seed, epoch) itself.
    """

    # DataLoader's own constructor (Lightning rebuilds loaders from its arguments); the state:
    base_seed: int | None = None  # drawn from the global RNG at the first epoch
    epoch, trained, epoch_batches, _start = -1, 0, 0, 0
    _resume_at: int | None = None

    def __iter__(self) -> Any:
        if self.base_seed is None:
            self.base_seed = int(torch.randint(2**62, ()).item())
        if self._resume_at is None:
            self.epoch, self._start = self.epoch + 1, 0
        else:
            self._start, self._resume_at = self._resume_at, None
        self.trained = self._start
        return super().__iter__()

    @property
    def _index_sampler(self) -> Any:
        return _PositionedBatches(self, super()._index_sampler)

    def state_dict(self) -> dict[str, int]:
        return {
            "base_seed": self.base_seed,
            "epoch": self.epoch,
            "trained": self.trained,
            "epoch_batches": self.epoch_batches,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.base_seed, self.epoch = state["base_seed"], state["epoch"]
        mid_epoch = 0 < state["trained"] < state["epoch_batches"]
        self._resume_at = state["trained"] if mid_epoch else None


class _PositionedBatches:
    """The loader's batch sampler, seeded per epoch and per batch, from the loader's start batch."""

    def __init__(self, loader: ResumableLoader, batches: Any) -> None:
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        loader = self.loader
        rank = getattr(getattr(self.batches, "sampler", None), "rank", 0)
        torch.manual_seed(_seed(loader.base_seed, loader.epoch))  # RandomSampler draws from it
        for i, indices in enumerate(self.batches):
            if i >= loader._start:
                torch.manual_seed(_seed(loader.base_seed, loader.epoch, i, rank))
                yield indices


class ResumableTraining(pl.Callback):
    """What a mid-epoch checkpoint needs beyond Lightning's own state: the number of batches of the
    epoch trained so far (for `ResumableLoader`) and the module's running sums of the epoch's
    training metrics (`BaseModule` logs their means once at the epoch's end)."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):  # runs before the checkpoint callbacks save
            loader.trained, loader.epoch_batches = i + 1, int(trainer.num_training_batches)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        loader = trainer.train_dataloader
        mid_epoch = isinstance(loader, ResumableLoader) and loader.trained < loader.epoch_batches
        if mid_epoch and hasattr(module, "_epoch_sums"):
            checkpoint["train_epoch_sums"] = {
                "sums": dict(module._epoch_sums),
                "counts": dict(module._epoch_counts),
            }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._sums = checkpoint.get("train_epoch_sums")

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        if self._sums is not None:  # after the module's on_train_epoch_start reset them
            sums, counts = self._sums["sums"], self._sums.get("counts")
            if counts is None:  # a checkpoint from before the per-term counts: one for all
                counts = dict.fromkeys(sums, self._sums["count"])
            module._epoch_sums, module._epoch_counts = sums, counts
            self._sums = None
