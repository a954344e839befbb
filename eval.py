"""python eval.py ckpt_path=<run_dir>/checkpoints/last.ckpt  (see conf/eval.yaml)"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from src.eval import evaluate
    from src.utils.run import run_entry

    run_entry(evaluate, cfg)


if __name__ == "__main__":
    from src.utils.startup import prepare

    sys.argv = prepare(sys.argv, "eval")
    main()
