"""User-facing errors: one short message that names the problem and the fix, no traceback."""

from __future__ import annotations

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
