"""`scripts/faults.py` end to end (slow): every fault case gives its documented behaviour."""

from __future__ import annotations

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_every_fault_case_gives_the_documented_behaviour() -> None:
    result = run_script("scripts/faults.py", timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "every case gave the documented behaviour" in result.stdout
