"""What every model shares: optimiser set-up, one shared step for train/val/test, metric logging,
deterministic evaluation noise, and the check that the chosen loss plugin fits the model.

A new model subclasses `BaseModule`, sets `loss_task`, implements `shared_step` and calls
`self.save_hparams()` in its constructor. `monitor` and `monitor_mode` name its headline metric, one
it logs itself: what a run checkpoints and stops on when the config says `monitor: model`.

A model that names its networks in `compiled` can offer a `compile` argument (`model.compile=true`):
those networks go through `torch.compile` in place (`nn.Module.compile`), so their weights keep
their names and checkpoints load across compiled and uncompiled models either way; the `_orig_mod.`
names that a `torch.compile(net)` wrapper writes are read too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import nn

from src.utils.checkpoint import uncompiled_names
from src.utils.errors import UserError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class BaseModule(LightningModule):
    loss_task: str = ""
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    # the attributes holding the networks that `compile=True` compiles
    compiled: tuple[str, ...] = ()

    def __init__(
        self,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        eval_seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if compile and not self.compiled:
            raise UserError(f"{type(self).__name__} names no network to compile: drop compile.")
        self.compile_networks, self._networks_compiled = compile, False
        task = getattr(loss, "task", None)
        if task != self.loss_task:
            raise UserError(
                f"loss {type(loss).__name__} (for {task or 'no'} models) does not fit "
                f"{type(self).__name__}, which needs a {self.loss_task!r} loss: choose loss=<one "
                f"of the configs in conf/loss whose target has task = {self.loss_task!r}>."
            )
        self.loss = loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.eval_seed = eval_seed

    @property
    def example_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one example the model reads, which `src.train` checks against the data's
        before anything runs (a None dimension: any size); by default the `example_shape` its
        `net` declares. None: any shape, or examples that are not fixed-shape tensors."""
        return getattr(getattr(self, "net", None), "example_shape", None)

    def save_hparams(self, logger: bool = True, ignore: Sequence[str] = ()) -> None:
        """Lightning's `save_hyperparameters` for the calling constructor (and those of the
        subclasses that called it), leaving out by rule every argument that is code rather than
        data: modules, optimizer and network factories, classes. The config rebuilds those, and a
        checkpoint's hparams stay plain data. `ignore` leaves out data kept elsewhere."""
        frame = inspect.currentframe().f_back
        arguments: dict[str, Any] = {}
        for constructor in collect_init_args(frame, [], classes=(LightningModule,)):
            arguments.update(constructor)
        code = [name for name, value in arguments.items() if callable(value)]
        self.save_hyperparameters(ignore=[*ignore, *code], frame=frame, logger=logger)

    def shared_step(self, batch: Any, batch_idx: int, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def configure_model(self) -> None:
        """Compile the `compiled` networks, once, when a trainer first runs the model."""
        if self.compile_networks and not self._networks_compiled:
            for name in self.compiled:
                self.get_submodule(name).compile()
            self._networks_compiled = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = uncompiled_names(checkpoint["state_dict"])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, batch_idx, "test")

    def eval_generator(self, batch_idx: int) -> torch.Generator:
        """Noise for evaluation batch `batch_idx`: the same on every run, so metrics reproduce."""
        return torch.Generator(device=self.device).manual_seed(self.eval_seed * 100_003 + batch_idx)

    def log_terms(self, stage: str, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """Log `stage/name` for each term, averaged over the epoch (and over processes under DDP).

        Training also logs `train/name_step` on the steps the loggers write. Its epoch means are
        summed here and logged once at the epoch's end: `self.log` on every step would cost a
        millisecond or two per step, a fifth of a small model's step on a CPU. A term logged on
        some steps only (a GAN's generator loss) is averaged over those steps.
        """
        if stage != "train":
            names = {f"{stage}/{name}": value for name, value in terms.items()}
            self.log_dict(
                names,
                on_epoch=True,
                batch_size=batch_size,
                sync_dist=True,
                add_dataloader_idx=False,
            )
            return
        for name, value in terms.items():
            previous = self._epoch_sums.get(name, 0.0)
            self._epoch_sums[name] = previous + value.detach() * batch_size
            self._epoch_counts[name] = self._epoch_counts.get(name, 0) + batch_size
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            steps = {f"train/{name}_step": value for name, value in terms.items()}
            self.log_dict(steps, on_step=True, on_epoch=False, batch_size=batch_size)

    def on_train_epoch_start(self) -> None:
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_counts: dict[str, int] = {}

    def epoch_sums(self) -> dict[str, dict[str, Any]]:
        """The epoch's running sums and counts of the training terms, for a mid-epoch checkpoint."""
        return {"sums": dict(self._epoch_sums), "counts": dict(self._epoch_counts)}

    def restore_epoch_sums(self, state: dict[str, Any]) -> None:
        """Take back `epoch_sums()` from a checkpoint (one count for all terms in older ones)."""
        sums, counts = dict(state["sums"]), state.get("counts")
        self._epoch_sums = sums
        self._epoch_counts = (
            dict(counts) if counts is not None else dict.fromkeys(sums, state["count"])
        )

    def on_train_epoch_end(self) -> None:
        if self._epoch_sums:
            sums, counts = self._epoch_sums, self._epoch_counts
            means = {f"train/{k}": v / counts[k] for k, v in sums.items()}
            self.log_dict(means, on_epoch=True, sync_dist=True)

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups; a group's `lr_scale` multiplies its learning rate."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.param_groups())
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }
