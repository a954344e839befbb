"""What a failed command leaves in its run directory.

Hydra makes the run directory (with `.hydra/` and the log) before the task starts. If the task
then fails:
- a new run that saved no checkpoint and took no training step is removed (its `.hydra/`, log,
  start-up status and TensorBoard header are all it holds), so failed commands leave no empty
  folders;
- a resumed run is put back byte for byte as it was, as long as the failure came before the run
  changed for good (no checkpoint rewritten): files it added are removed, the logs cut back to
  their old length, small files (status, metrics, configs) restored;
- any other run keeps its folder, marked `failed` (or `diverged`) in status.json.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from src.utils.status import read_status, write_status

SMALL = 1 << 20  # files kept in memory to restore them: status, metrics, configs (no checkpoint)


class RunFolder:
    """A snapshot of a run directory taken when the task starts, and what to do on failure."""

    def __init__(self, path: str | Path, resumed: bool, started: str | None = None) -> None:
        """`started`: the folder (relative to `path`) this invocation's start-up already wrote,
        e.g. `.hydra/resumed_<time>`: part of what a failure undoes."""
        self.path, self.resumed = Path(path), resumed
        self.status = read_status(self.path)
        self.before: dict[Path, tuple[int, int, bytes | None]] = {}
        fresh = self.path / started if started else None
        for file in self._files():
            if fresh is not None and fresh in file.parents:
                continue
            stat = file.stat()
            kept = stat.st_size < SMALL and file.suffix not in (".log", ".ckpt")
            self.before[file] = (
                stat.st_size,
                stat.st_mtime_ns,
                file.read_bytes() if kept else None,
            )

    def _files(self) -> list[Path]:
        return [p for p in self.path.rglob("*") if p.is_file()] if self.path.is_dir() else []

    def _nothing_done(self) -> bool:
        """No checkpoint and not one training step: what the folder holds is start-up only."""
        status = read_status(self.path)
        return (
            not any(f.suffix == ".ckpt" for f in self._files())
            and status.get("status") in (None, "running", "failed")
            and not status.get("step")
        )

    def _restorable(self) -> bool:
        """Whether every file the run changed can be put back (none rewritten beyond that)."""
        for file, (size, mtime, content) in self.before.items():
            if not file.is_file():
                return False
            stat = file.stat()
            if (stat.st_size, stat.st_mtime_ns) == (size, mtime):
                continue
            if content is None and not (file.suffix == ".log" and stat.st_size >= size):
                return False
        return True

    def _restore(self) -> None:
        for file in self._files():
            if file not in self.before:
                file.unlink()
        for file, (size, mtime, content) in self.before.items():
            if file.stat().st_mtime_ns == mtime and file.stat().st_size == size:
                continue
            if content is None:
                with open(file, "r+b") as log:
                    log.truncate(size)
            else:
                file.write_bytes(content)
        kept = {parent for file in self.before for parent in file.parents}
        for directory in sorted(self.path.rglob("*"), key=lambda p: -len(p.parts)):
            if directory.is_dir() and directory not in kept and not any(directory.iterdir()):
                directory.rmdir()

    def failed(self, error: str, multirun: bool) -> str:
        """Clean up after a failure; returns what was done, for the message."""
        if not self.path.is_dir():
            return ""
        if self.resumed:
            if self._restorable():
                self._restore()
                return f"{self.path} is left as it was"
        elif not multirun and self._nothing_done():
            shutil.rmtree(self.path)
            return ""
        status = read_status(self.path)
        if status != self.status and status.get("status") not in (None, "running"):
            return f"{self.path} says how it ended in status.json"
        try:
            write_status(self.path, "failed", error=error)
        except OSError as err:  # a full disk: the message still gets out
            return f"{self.path} could not be marked failed ({err.strerror})"
        return f"{self.path} is marked failed (status.json)"
