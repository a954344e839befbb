"""python train.py [model=vae] [data=fashion_mnist] [key=value ...]  (see conf/train.yaml)
python train.py resume=<run_dir>      continue a run in its own directory, with its own overrides
python train.py -m key=a,b seed=1,2   a sweep; returns the monitored metric to Optuna"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from src.train import train
    from src.utils.run import run_entry

    metrics = run_entry(train, cfg)
    return metrics.get(cfg.get("monitor", ""))


if __name__ == "__main__":
    from src.utils.startup import prepare

    sys.argv = prepare(sys.argv, "train")
    main()
