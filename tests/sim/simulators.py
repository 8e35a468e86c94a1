"""Which simulator a test needs: skipped with the reason where it is missing, except in CI."""
import os

import pytest

from bsnn.sim.toolchain import availability


def require_simulator(simulator: str) -> None:
    reason = availability(simulator)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{simulator} is required in CI: {reason}")
        pytest.skip(reason)
