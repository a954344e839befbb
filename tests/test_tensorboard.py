"""What a researcher sees in TensorBoard: scalars, image grids, latent plots, the HPARAMS tab."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from src.train import train
from tests.conftest import needs_fashion

pytestmark = needs_fashion
RUN = [
    "model=vae_2d",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=200",
    "model.iwae_samples=4",
    "trainer.log_every_n_steps=4",
]
SCALARS = {
    "train/nelbo_step",
    "train/recon_step",
    "train/kl_step",
    "train/nelbo",
    "train/kl",
    "val/nelbo",
    "val/recon",
    "val/kl",
    "test/nelbo",
    "test/iwae_nll",
}
IMAGES = {"val/reconstructions", "val/samples", "val/latent_scatter", "val/latent_manifold"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("tb_run")
    train(compose_config(RUN, out))
    return out


def _events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}
    )
    return events.Reload()


def test_scalars_and_images_are_logged(run_dir: Path) -> None:
    events = _events(run_dir)
    tags = events.Tags()
    assert set(tags["scalars"]) >= SCALARS, sorted(tags["scalars"])
    assert set(tags["images"]) >= IMAGES, tags["images"]
    assert len(events.Scalars("val/nelbo")) == 2  # one per validation epoch
    assert len(events.Scalars("train/nelbo")) == 2  # one per training epoch
    assert len(events.Scalars("train/nelbo_step")) == 4  # 2 x 8 steps, written every 4th
    for tag in IMAGES:
        assert len(events.Images(tag)) == 2
    recon = events.Images("val/reconstructions")[-1]
    assert recon.width == 16 * 30 + 2 and recon.height == 2 * 30 + 2  # a row in, a row out
    manifold = events.Images("val/latent_manifold")[-1]
    assert manifold.width == manifold.height == 15 * 30 + 2
    nelbo = events.Scalars("val/nelbo")[-1].value
    recon_v, kl_v = events.Scalars("val/recon")[-1].value, events.Scalars("val/kl")[-1].value
    assert nelbo == pytest.approx(recon_v + kl_v, rel=1e-5)


def test_hparams_tab_holds_config_and_final_metrics(run_dir: Path) -> None:
    content = _events(run_dir).PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["model/latent/dim"].number_value == 2
    assert hparams["model/_target_"].string_value == "src.models.vae.VAE"
    assert hparams["loss/likelihood/_target_"].string_value == "src.losses.likelihoods.Bernoulli"
    assert not any(key.startswith("model/loss") for key in hparams)  # listed once, as loss/
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"final/val/nelbo", "final/test/nelbo", "final/test/iwae_nll"} <= metric_tags
    saved = json.loads((run_dir / "metrics.json").read_text())
    final = _events(run_dir).Scalars("final/test/nelbo")[-1].value
    assert final == pytest.approx(saved["test/nelbo"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served(run_dir: Path) -> Iterator[str]:
    """A real TensorBoard server on the trained run, once it lists the run's scalars."""
    port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir)),
            *("--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, scalars = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                scalars = _get_json(f"{base}/data/plugin/scalars/tags")
                if scalars.get("tensorboard", {}).keys() >= SCALARS:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert scalars.get("tensorboard", {}).keys() >= SCALARS, scalars
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_tensorboard_serves_the_run_over_http(served: str) -> None:
    images = _get_json(f"{served}/data/plugin/images/tags")
    assert images["tensorboard"].keys() >= IMAGES
    series = _get_json(f"{served}/data/plugin/scalars/scalars?run=tensorboard&tag=val/nelbo")
    assert len(series) == 2


def _chromedriver() -> str:
    """Debian's chromedriver, installed with chromium when missing and allowed (root, apt-get);
    otherwise the test fails and says what to install, so a missing browser is never green."""
    if shutil.which("chromedriver") is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
    found = shutil.which("chromedriver")
    if found is None or shutil.which("chromium") is None:
        pytest.fail("this test needs Debian's chromium and chromium-driver: apt-get install them")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    options.binary_location = shutil.which("chromium") or ""
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# every element matching a selector, inside shadow roots too (TensorBoard's Polymer dashboards)
DEEP_IMAGES = """
function deep(root, out) {
  root.querySelectorAll('img').forEach(e => out.push(e));
  root.querySelectorAll('*').forEach(e => { if (e.shadowRoot) deep(e.shadowRoot, out); });
  return out;
}
return deep(document, []).map(e => [e.getAttribute('src') || '', e.naturalWidth]);
"""


def _page(browser: Any, url: str, ready: Callable[[Any], Any], shot: Path) -> str:
    """Open `url`, wait (up to 60 s) until `ready(browser)`, save a screenshot; the page's text."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    try:
        WebDriverWait(browser, 60, poll_frequency=0.5).until(ready)
    finally:
        browser.save_screenshot(str(shot))
    return browser.find_element("tag name", "body").text


@pytest.mark.slow
def test_tensorboard_as_a_person_sees_it_in_a_real_browser(
    served: str, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The scalars tab lists the run's train/, val/ and test/ tags, the images tab shows the
    image grids (loaded: a natural width), the HPARAMS tab lists the run with its config and final
    metrics. Screenshots of each tab are saved (the test's temporary folder, or
    $KX_SCREENSHOTS)."""
    shots = Path(os.environ.get("KX_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    wanted = {"train/nelbo_step", "train/kl", "val/nelbo", "val/recon", "test/nelbo"}

    def body(driver: Any) -> str:
        return driver.find_element("tag name", "body").text

    text = _page(
        browser,
        f"{served}/#scalars&tagFilter={urllib.parse.quote('^(train|val|test)/')}",
        lambda d: all(tag in body(d) for tag in wanted),
        shots / "scalars.png",
    )
    assert wanted <= set(text.split())

    def loaded(driver: Any) -> list:
        found = driver.execute_script(DEEP_IMAGES)
        return [src for src, width in found if "individualImage" in src and width > 0]

    _page(
        browser, f"{served}/#images", lambda d: len(loaded(d)) >= len(IMAGES), shots / "images.png"
    )
    text = body(browser)
    assert all(tag in text for tag in IMAGES)

    hparams = ("model/latent/dim", "final/val/nelbo", "final/test/iwae_nll")
    text = _page(
        browser,
        f"{served}/#hparams",
        lambda d: all(name in body(d) for name in hparams),
        shots / "hparams.png",
    )
    assert "Hyperparameters" in text and all(name in text for name in hparams)
    assert all((shots / f"{tab}.png").stat().st_size > 10_000 for tab in ("scalars", "images"))
