"""Writing checkpoints for the Trainer (reading them back is `src.utils.checkpoint`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.utils.files import write_atomically


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
