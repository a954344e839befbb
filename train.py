"""python train.py [model=vae] [data=fashion_mnist] [key=value ...]  (see conf/train.yaml)"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from src.train import train
    from src.utils.run import run_entry

    metrics = run_entry(train, cfg)
    monitored = metrics.get(cfg.get("monitor", ""))
    return monitored


if __name__ == "__main__":
    main()
