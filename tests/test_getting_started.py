"""The set-up commands of docs/getting_started.md, run as written there (slow): each command of
its first `bash` block goes through `make`, into this test's own interpreter's environment
(`VENV=`), with a tiny budget (`ARGS=`) and its logs in a temporary folder. The page's other block
(`make lock`, `make test-latest`) resolves fresh versions from the registry, a download, so no
test runs it; CI's own `make test` is the full run of the second set-up command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PAGE = ROOT / "docs" / "getting_started.md"
# what each set-up command gets to stay small: a fast_dev_run, or one quick test file
TINY = {
    "make train": "ARGS=trainer.fast_dev_run=true paths.log_dir={logs} extras.print_config=false",
    "make test": "ARGS=-q tests/test_docs.py",
}


def setup_commands() -> list[str]:
    """The commands of the page's first bash block, comments dropped."""
    block = re.search(r"```bash\n(.*?)```", PAGE.read_text(), re.S)
    assert block, f"{PAGE} has no bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_the_page_shows_the_two_set_up_commands() -> None:
    assert setup_commands() == ["make train", "make test"]


@pytest.mark.parametrize("command", setup_commands())
def test_a_set_up_command_runs_as_written(command: str, tmp_path: Path) -> None:
    args = TINY[command].format(logs=tmp_path / "logs")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "HYDRA_FULL_ERROR")}
    result = subprocess.run(
        [*command.split(), f"VENV={sys.prefix}", args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "installed packages match requirements.lock" in output
    if command == "make train":
        (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
        assert f"run directory: {run}" in result.stdout
        assert (run / "checkpoints").is_dir() or (run / "metrics.json").is_file()
    else:
        assert re.search(r"\d+ passed", result.stdout), output[-3000:]
