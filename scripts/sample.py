"""Write a PNG grid of samples from a trained generative model.

    python scripts/sample.py ckpt_path=<run_dir>/checkpoints/last.ckpt n=64 out=samples.png
                             [seed=0] [nrow=8] [steps=1000]

Works for any model with a `sample(n, generator)` method returning images in [0, 1]; `steps`
sets the chain length of models that sample by MCMC (energy models: long chains from noise).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {
    "ckpt_path": "???",
    "n": 64,
    "out": "samples.png",
    "seed": 0,
    "nrow": None,
    "steps": None,
}


def main(argv: list[str]) -> None:
    import os

    import torch
    from torchvision.utils import save_image

    from src.utils.checkpoint import load_model, read_checkpoint, run_config
    from src.utils.errors import UserError
    from src.utils.script_args import parse_key_values

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    try:
        args = parse_key_values(argv, DEFAULTS, "sample.py")
        if not isinstance(args.n, int) or args.n < 1:
            raise UserError(f"n={args.n!r} must be a positive integer.")
        if Path(args.out).is_dir():
            raise UserError(
                f"out={args.out} is a folder: give a file name, e.g. out={args.out}/samples.png"
            )
        ckpt = read_checkpoint(args.ckpt_path)
        model = load_model(args.ckpt_path, run_config(args.ckpt_path, ckpt), ckpt)
        if not hasattr(model, "sample"):
            raise UserError(f"{type(model).__name__} cannot generate samples (no sample method).")
        steps = {} if args.steps is None else {"steps": args.steps}
        images = model.sample(args.n, torch.Generator().manual_seed(args.seed), **steps)
        nrow = args.nrow or max(1, round(args.n**0.5))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        save_image(images.clamp(0, 1), args.out, nrow=nrow)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.n} samples to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
