"""A model from outside the project, in one module and one config (docs/adding_a_model.md): copied
to a temporary folder, its config found through `hydra.searchpath`, it trains with train.py,
evaluates with eval.py and gets the toy-density callback's measures and figures, without a file
of the project changed. Its KL is recomputed here from the trained weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.callbacks.toy_density import ToyDensityCallback
from src.data.toy_distributions import EightGaussians
from src.metrics.toy2d import grid_log_density, grid_points, kl_on_grid
from src.utils.instantiate import evaluation_callbacks
from tests.conftest import ROOT, run_script

EXAMPLE = ROOT / "docs" / "examples" / "gaussian2d"
GRID = 60
SMALL = [
    "data.n_train=4096",
    "data.n_val=1024",
    "data.n_test=1024",
    "trainer.max_epochs=3",
    f"callbacks.toy_density.grid_size={GRID}",
    "callbacks.toy_density.n_samples=2000",
    "extras.print_config=false",
]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outside")
    shutil.copytree(EXAMPLE, root / "mine")
    env = {"PYTHONPATH": str(root / "mine")}
    train = run_script(
        "train.py",
        "model=gaussian2d",
        "data=toy2d",
        f"hydra.searchpath=[file://{root / 'mine' / 'conf'}]",
        f"paths.log_dir={root / 'logs'}",
        *SMALL,
        env=env,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = (root / "logs" / "train" / "runs").iterdir()
    return {"root": root, "run": run, "env": env}  # type: ignore[dict-item]


def _kl_of(checkpoint: Path) -> float:
    weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    mu, sigma = weights["mu"].double(), weights["log_sigma"].double().exp()
    distribution = EightGaussians()
    _, _, log_p = grid_log_density(distribution, GRID)
    _, _, points = grid_points(distribution.bounds, GRID)
    log_q = torch.distributions.Normal(mu, sigma).log_prob(points).sum(-1)
    return kl_on_grid(log_p, log_q)


def test_it_trains_and_gets_the_toy_density_measures_and_figures(outside) -> None:
    metrics = json.loads((outside["run"] / "metrics.json").read_text())
    last = outside["run"] / "checkpoints" / "last.ckpt"
    assert metrics["test/kl"] == pytest.approx(_kl_of(last), rel=1e-4)
    sigma = torch.load(last, weights_only=True)["state_dict"]["log_sigma"].exp()
    assert (sigma > 1.2).all(), sigma  # from 1 towards the data's 1.42 per axis
    for name in ("val/mmd", "val/modes_covered", "test/kl_mass", "val/log_z_grid"):
        assert name in metrics, name
    events = EventAccumulator(str(outside["run"] / "tensorboard"), size_guidance={"images": 0})
    assert {"val/density"} <= set(events.Reload().Tags()["images"])


def test_eval_refuses_its_class_until_its_module_is_trusted(outside) -> None:
    ckpt = outside["run"] / "checkpoints" / "last.ckpt"
    logs = outside["root"] / "eval_logs"
    common = [f"ckpt_path={ckpt}", f"paths.log_dir={logs}", "extras.print_config=false"]
    refused = run_script("eval.py", *common, env=outside["env"])
    assert refused.returncode == 2
    assert "model._target_='gaussian2d.Gaussian2d' is refused" in refused.stderr
    assert "trust=[gaussian2d]" in refused.stderr and "Traceback" not in refused.stderr
    evaluated = run_script("eval.py", *common, "trust=[gaussian2d]", env=outside["env"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (run,) = (logs / "eval" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/kl"] == pytest.approx(_kl_of(ckpt), rel=1e-4)
    assert metrics["val/loss"] > 0 and "val/mmd" in metrics


def test_the_project_keeps_no_trace_of_it() -> None:
    tracked = (ROOT / "src").rglob("*")
    assert not any("gaussian2d" in path.read_text() for path in tracked if path.suffix == ".py")
    assert not (ROOT / "conf" / "model" / "gaussian2d.yaml").exists()


def test_eval_builds_only_the_trusted_evaluation_callbacks_of_a_saved_config(tmp_path) -> None:
    """Lightning's training callbacks are left out, and a name outside the trusted modules is
    never imported, let alone called."""
    saved = OmegaConf.create(
        {
            "toy_density": {"_target_": "src.callbacks.toy_density.ToyDensityCallback", "seed": 7},
            "checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"},
            "early_stopping": {"_target_": "src.callbacks.divergence_guard.DivergenceGuard"},
            "evil": {"_target_": "pathlib.Path.touch", "self": str(tmp_path / "PWNED")},
        }
    )
    (callback,) = evaluation_callbacks(saved)
    assert isinstance(callback, ToyDensityCallback) and callback.seed == 7
    assert not (tmp_path / "PWNED").exists()
