"""`status.json` in a run directory: how the run stands, for people, schedulers and
`scripts/summarize.py`.

    {"status": "running" | "finished" | "interrupted" | "failed" | "diverged", "step": N, ...}

`running` is written when fitting starts, so a run killed with SIGKILL stays `running`; the other
states say how it ended (`src/callbacks/run_status.py`, `src/utils/run.py`). Runs from before
status files count as `finished` when they wrote their metrics.json.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from src.utils.files import write_json

STATUS_FILE = "status.json"
STATES = ("running", "finished", "interrupted", "failed", "diverged")


def write_status(run_dir: str | Path, status: str, **fields: Any) -> None:
    """Write the run's status (atomically), with the time and any further fields."""
    if status not in STATES:
        raise ValueError(f"unknown run status {status!r}")
    when = datetime.now().isoformat(timespec="seconds")
    write_json(Path(run_dir, STATUS_FILE), {"status": status, "time": when, **fields})


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status; {} when it has none (and wrote no metrics.json)."""
    path = Path(run_dir, STATUS_FILE)
    if path.is_file():
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}
    return {"status": "finished"} if Path(run_dir, "metrics.json").is_file() else {}
