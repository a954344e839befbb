"""Keep only what loading a model needs (weights, run config, data-derived model arguments).

    python scripts/slim_checkpoint.py <run_dir>/checkpoints/best.ckpt assets/<name>.ckpt

Drops optimiser and loop states (two thirds of an Adam-trained checkpoint); the result loads with
eval.py, scripts/sample.py and as `classifier_ckpt` of the sample-quality metrics, not for resuming.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEEP = ("state_dict", "run_config", "model_kwargs", "hyper_parameters", "pytorch-lightning_version")


def main(argv: list[str]) -> None:
    import torch

    from src.utils.checkpoint import read_checkpoint
    from src.utils.errors import UserError

    try:
        if len(argv) != 2:
            raise UserError("usage: slim_checkpoint.py <in.ckpt> <out.ckpt>")
        source, target = map(Path, argv)
        if target.exists():
            raise UserError(f"{target} exists: remove it first or choose another name.")
        ckpt = read_checkpoint(source)
        if "run_config" not in ckpt:
            raise UserError(f"{source} has no run_config: slim checkpoints written by train.py.")
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v for k, v in ckpt.items() if k in KEEP}, target)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
