"""Read what W&B wrote offline: a run folder's `run-<id>.wandb` file is a LevelDB-style log of
protobuf `Record`s (a 7-byte `:W&B` header, then 32 KiB blocks of chunks, each with a 7-byte
header: checksum, length, kind). W&B 0.31 ships no Python reader, so the tests keep this one,
independent of the code under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto.wandb_internal_pb2 import Record

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        kind = data[pos + 6] if left >= 7 else 0
        if kind == 0:  # the rest of the block is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            yield Record.FromString(parts)
            parts = b""


def _items(items: Any) -> dict[str, Any]:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def read_run(folder: Path) -> dict[str, Any]:
    """One offline run folder: its id, name, project, config, history rows and exit code."""
    (path,) = folder.glob("run-*.wandb")
    run: dict[str, Any] = {"config": {}, "history": [], "exit_code": None}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(
                id=record.run.run_id, name=record.run.display_name, project=record.run.project
            )
        elif kind == "config":
            run["config"].update(_items(record.config.update))
        elif kind == "history":
            run["history"].append(_items(record.history.item))
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run
