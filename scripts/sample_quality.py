"""FID and KID of a trained generative model, in the shipped classifier's feature space.

    python scripts/sample_quality.py ckpt_path=<run_dir>/checkpoints/last.ckpt
        [classifier_ckpt=assets/fashion_mnist_classifier.ckpt] [n=10000] [split=test] [seed=0]

The same numbers as the SampleQuality callback's `test/fid`, `test/kid` (same classifier, same n,
same seed), for checkpoints trained without it: e.g. the VAE. Any model with a
`sample(n, generator)` method returning images in [0, 1]; the real images are the run's data
split, never binarised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {
    "ckpt_path": "???",
    "classifier_ckpt": str(ROOT / "assets" / "fashion_mnist_classifier.ckpt"),
    "n": 10000,
    "split": "test",
    "seed": 0,
}


def main(argv: list[str]) -> None:
    import os

    from src.metrics.sample_quality import SampleQuality, load_features_for
    from src.utils.checkpoint import load_model, read_checkpoint, run_config
    from src.utils.errors import UserError
    from src.utils.instantiate import instantiate
    from src.utils.script_args import parse_key_values

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    try:
        args = parse_key_values(argv, DEFAULTS, "sample_quality.py")
        if args.split not in ("val", "test"):
            raise UserError(f"split={args.split!r}: choose val or test.")
        ckpt = read_checkpoint(args.ckpt_path)
        cfg = run_config(args.ckpt_path, ckpt)
        model = load_model(args.ckpt_path, cfg, ckpt)
        if not callable(getattr(model, "sample", None)):
            raise UserError(f"{type(model).__name__} cannot generate samples (no sample method).")
        datamodule = instantiate(cfg.data)
        data_name = getattr(datamodule, "name", "?")
        features = load_features_for(args.classifier_ckpt, data_name, "classifier_ckpt")
        metric = SampleQuality(features)
        metric.set_reference(datamodule.reference_images(args.split)[: args.n])
        values = metric(model.sample, args.n, args.seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"ckpt_path": str(args.ckpt_path), "n": args.n, **values}))


if __name__ == "__main__":
    main(sys.argv[1:])
