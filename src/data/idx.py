"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the raw array. Only unsigned bytes (type 0x08) occur here.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from src.utils.errors import UserError

IDX_UBYTE = 0x08


def read_idx(path: str | Path) -> torch.Tensor:
    """Return the array stored in an IDX file as a uint8 tensor of its declared shape."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(
            f"cannot read {path}: {err}. The file is corrupt: delete it and fetch it again."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    expected = int(np.prod(shape)) if shape else -1
    if len(raw) - header != expected:
        raise UserError(
            f"{path} is truncated or corrupt: header says {shape} "
            f"({expected} bytes) but the file holds {len(raw) - header}. Fetch it again."
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def write_idx(path: str | Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    data = array.to(torch.uint8).contiguous().numpy()
    header = bytes([0, 0, IDX_UBYTE, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + data.tobytes())
