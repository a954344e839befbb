"""User-facing errors: one short message that names the problem and the fix, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (config, data, checkpoint). Entry points print it and exit 2."""
