"""End to end with MLflow and W&B: `train.py logger=many` (TensorBoard, CSV, MLflow and W&B
offline), then `resume=` with a larger budget, then a real `mlflow server` on the run's store, read
back over its REST API: one MLflow run for the run directory, every training step once with the
CSV logger's values, the config as params, an image and the checkpoint as artifacts. The W&B
offline folders are read back from W&B's own run files: one run id, each step once."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from json import loads
from pathlib import Path

import pytest

from tests.conftest import TINY_MNIST, run_script, write_fake_mnist
from tests.wandb_offline import read_run

pytestmark = pytest.mark.slow

SHORT = [
    *TINY_MNIST,
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "logger=many",
    "extras.print_config=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The URL of an `mlflow server` on a trained-then-resumed run's store, and the run folder."""
    root = tmp_path_factory.mktemp("tracked")
    logs = root / "logs"
    data = write_fake_mnist(root / "data")
    first = run_script(
        "train.py", *SHORT, "trainer.max_epochs=1", f"data.data_dir={data}", f"paths.log_dir={logs}"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (logs / "train" / "runs").iterdir()
    assert f"open it in MLflow: mlflow ui --backend-store-uri sqlite:///{logs}/mlflow.db" in (
        first.stdout
    )
    second = run_script("train.py", f"resume={run_dir}", "trainer.max_epochs=2")
    assert second.returncode == 0, second.stderr[-3000:]

    port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server"),
            *("--backend-store-uri", f"sqlite:///{logs}/mlflow.db"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield url, run_dir
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _get(url: str, endpoint: str, **query: str) -> dict:
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(query)}") as response:
        return loads(response.read())


def _run(url: str) -> dict:
    experiment = _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="train")
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/runs/search",
        data=f'{{"experiment_ids": ["{experiment["experiment"]["experiment_id"]}"]}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        runs = loads(response.read())["runs"]
    assert len(runs) == 1, "the resumed run must continue its MLflow run, not start another"
    return runs[0]


def test_the_resumed_run_is_one_finished_mlflow_run_named_after_its_directory(served) -> None:
    url, run_dir = served
    run = _run(url)
    assert run["info"]["run_name"] == run_dir.name and run["info"]["status"] == "FINISHED"
    assert run["info"]["run_id"] == (run_dir / "mlflow_run_id").read_text().strip()
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model/optimizer/lr"] == "0.001" and params["data/name"] == "mnist"
    assert params["trainer/max_epochs"] != "2"  # the first run's value: MLflow fixes params
    metrics = {m["key"] for m in run["data"]["metrics"]}
    assert {"train/nelbo_step", "val/nelbo", "test/nelbo", "test/iwae_nll"} <= metrics


def test_every_training_step_is_logged_once_with_the_csv_loggers_value(served) -> None:
    url, run_dir = served
    run_id = _run(url)["info"]["run_id"]
    history = _get(
        url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="train/nelbo_step"
    )["metrics"]
    got = {int(m["step"]): m["value"] for m in history}
    assert len(got) == len(history) == 8  # 2 epochs of 4 batches, none twice
    with open(run_dir / "csv" / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/nelbo_step")]
    want = {int(r["step"]): float(r["train/nelbo_step"]) for r in rows}
    assert got.keys() == want.keys()
    assert all(abs(got[s] - want[s]) <= 1e-4 * abs(want[s]) for s in want)
    val = _get(url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="val/nelbo")
    assert len(val["metrics"]) == 2  # one per epoch, the first run's and the resumed one's


def test_an_image_and_the_checkpoint_are_artifacts_served_over_http(served) -> None:
    url, _ = served
    run_id = _run(url)["info"]["run_id"]
    listing = _get(url, "/api/2.0/mlflow/artifacts/list", run_id=run_id)
    top = {f["path"] for f in listing["files"]}
    assert "images" in top
    images = _get(url, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path="images")["files"]
    pngs = [f["path"] for f in images if f["path"].endswith(".png")]
    assert any(p.startswith("images/val~samples+") for p in pngs)
    with urllib.request.urlopen(
        f"{url}/get-artifact?{urllib.parse.urlencode({'run_uuid': run_id, 'path': pngs[0]})}"
    ) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    checkpoints = [
        f["path"]
        for folder in top - {"images"}
        for f in _get(url, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path=folder)["files"]
        if f["path"].endswith(".ckpt")
    ]
    assert "last/last.ckpt" in checkpoints


def test_the_resumed_run_continues_its_wandb_run_offline_with_each_step_once(served) -> None:
    """Offline, each part of the run is its own folder; both carry the run directory's W&B id and
    name, and together they hold every training step once, with the CSV logger's values."""
    _, run_dir = served
    parts = [read_run(f) for f in sorted((run_dir / "wandb").glob("offline-run-*"))]
    assert len(parts) == 2
    recorded = (run_dir / "wandb_run_id").read_text().strip()
    for part in parts:
        assert (part["id"], part["name"], part["project"]) == (recorded, run_dir.name, "train")
        assert part["exit_code"] == 0
        assert part["config"]["model/optimizer/lr"] == 0.001
        assert part["config"]["data/name"] == "mnist"
    steps = [
        [
            (h["trainer/global_step"], h["train/nelbo_step"])
            for h in p["history"]
            if "train/nelbo_step" in h
        ]
        for p in parts
    ]
    assert [s for s, _ in steps[0]] == [0, 1, 2, 3] and [s for s, _ in steps[1]] == [4, 5, 6, 7]
    with open(run_dir / "csv" / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/nelbo_step")]
    want = {int(r["step"]): float(r["train/nelbo_step"]) for r in rows}
    got = dict(steps[0] + steps[1])
    assert got.keys() == want.keys()
    assert all(abs(got[s] - want[s]) <= 1e-4 * abs(want[s]) for s in want)
    for part in parts:
        assert any("test/iwae_nll" in h for h in part["history"])
    grids = list((run_dir / "wandb").glob("offline-run-*/files/media/images/val/samples_*.png"))
    assert len(grids) == 2 and all(g.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for g in grids)
