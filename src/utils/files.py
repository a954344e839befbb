"""Atomic file writes: a temporary file beside the target, then a rename, so a crash or a full
disk never leaves a truncated file under a real name (it leaves the earlier one, or none)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write` on a temporary file in `path`'s folder, flush it to disk, rename it to
    `path`; on any error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        cause = _os_error(err)
        if cause is not None and cause.filename is None:  # torch.save's say nothing of where
            raise OSError(cause.errno, cause.strerror, str(path)) from err
        raise


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err` (torch.save turns one into a RuntimeError), if any."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def write_json(path: str | Path, data: Any) -> None:
    """`data` as indented, key-sorted JSON, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomically(path, lambda file: file.write(text.encode()))
