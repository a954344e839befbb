"""The lock file: it covers every dependency, pins torch with torchvision, and the check that
`make install` and CI run on it finds what differs."""

from __future__ import annotations

import tomllib

import pytest

from scripts.check_lock import (
    lock_text,
    main,
    problems,
    read_lock,
    required_names,
)
from src.utils.compose import ROOT

LOCK = ROOT / "requirements.lock"


def _pins() -> dict[str, str]:
    return read_lock(LOCK.read_text())


def test_the_lock_covers_every_dependency_of_pyproject() -> None:
    required = required_names(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    expected = {"torch", "torchvision", "lightning", "hydra-core", "pytest", "python-crfsuite"}
    assert expected <= required
    assert problems(_pins(), required, present={}, strict=False) == []


def test_the_lock_pins_a_torch_that_torchvision_loads_with() -> None:
    pins = _pins()
    assert pins["torch"] != "2.13.0" and "+cpu" not in pins["torch"]
    assert "torchvision" in pins and "lightning" in pins


def test_the_check_names_each_difference() -> None:
    pins = {"torch": "2.14.1", "numpy": "2.4.6"}
    present = {"torch": "2.14.1", "numpy": "2.3.0", "jupyter": "1.0"}
    assert problems(pins, {"torch", "numpy", "rich"}, present, strict=False) == [
        "rich is a dependency but not in the lock",
        "numpy 2.3.0 is installed, the lock says 2.4.6",
    ]
    strict = problems(pins, {"torch"}, present, strict=True)
    assert strict[-1] == "jupyter 1.0 is installed but not locked"
    cpu = problems({"torch": "2.13.0+cpu"}, {"torch"}, {}, strict=False)
    assert cpu == ["the lock pins torch==2.13.0+cpu, the CPU-only wheel: re-lock"]
    assert problems({"torch": "2.13.0"}, {"torch"}, {}, strict=False)[0].endswith("re-lock")


def test_lock_text_reads_back_and_a_bad_line_is_named() -> None:
    present = {"torch": "2.14.1", "hydra-core": "1.3.2"}
    assert read_lock(lock_text(present)) == present
    assert read_lock("Hydra_Core==1.3.2  # comment\n\n") == {"hydra-core": "1.3.2"}
    with pytest.raises(ValueError, match="line 2 of the lock is not name==version: 'numpy>=2'"):
        read_lock("torch==2.14.1\nnumpy>=2\n")


def test_a_missing_lock_is_one_line(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "none.lock")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'none.lock'} does not exist: run `make lock` to make it"
    )
