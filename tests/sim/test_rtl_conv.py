"""Convolutional builds (conv2d, OR pooling, input channels) through the cocotb testbench on
Verilator and Icarus Verilog: random bundles loaded through the config port, random inputs and
stalls, spike for spike against the golden model (bsnn.sim.regression.run_conv_build)."""
import os

import pytest

from bsnn.sim.regression import CONV_BUILDS, run_conv_build
from tests.sim.simulators import require_simulator

BUNDLES_PER_BUILD = 3


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("build_index", range(len(CONV_BUILDS)))
def test_random_conv_bundles_match_golden_model(simulator, build_index):
    require_simulator(simulator)
    failures = run_conv_build(simulator, build_index, BUNDLES_PER_BUILD,
                              int(os.environ.get("BSNN_RTL_SEED", 0)))
    assert not failures, "\n".join(failures[:10])
