"""User-facing errors: one short message that names the problem and the fix, no traceback."""

from __future__ import annotations

import errno
from typing import Any


class UserError(Exception):
    """Bad input from the user (config, data, checkpoint). Entry points print it and exit 2."""


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for quoting malformed input in a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}...' ({len(str(value))} chars)"


def clipped(text: str, limit: int = 60) -> str:
    """`text` as it is, cut to `limit` characters (for quoting what the user typed)."""
    return text if len(text) <= limit else f"{text[: limit - 12]}... ({len(text)} chars)"


def user_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can fix: a UserError, or a full disk or a
    folder that cannot be written anywhere in the exception's chain (torch.save, for one, turns
    a full disk into a RuntimeError); None for anything else (a bug: the traceback is due)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, UserError):
            return str(cause)
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return (
                f"the disk is full (writing {cause.filename or 'a file'}): free some space or "
                "point paths.log_dir at another disk; nothing was left half-written."
            )
        if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return (
                f"cannot write {cause.filename or 'a file'} ({cause.strerror}): pick a folder you "
                "can write, e.g. paths.log_dir=/tmp/logs."
            )
        cause = cause.__cause__ or cause.__context__
    return None
