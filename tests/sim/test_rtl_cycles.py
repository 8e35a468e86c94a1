"""The cycle model (bsnn.hdl.generate.cycle_estimate) against the generated Verilog, cycle for
cycle, on a parallel geometry (every layer within one accumulator word, U = 16, the result
queue of hdl/boards/ulx3s-85f-parallel.toml; tests/hdl/test_hdl_core.py has the others) with the
run-time trace on and off: the evaluation path the throughput benchmarks use
(bsnn.sim.rtl_eval.rtl_evaluate: the compiled Verilator harness with its config writes; Icarus
takes 25 s a sample on this geometry, so the suite leaves it to Verilator)."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.generate import cycle_estimate
from bsnn.sim.rtl_eval import generated_design, rtl_evaluate
from tests.sim.simulators import require_simulator

SIZES = [20, 60, 33, 7]
HW = HardwareConfig(lanes=64, neuron_lanes=16, neuron_pipeline="long", result_queue=True)


def _dense_bundle():
    """Hidden layers that fire often, so that groups of U neurons hold several spikes a step
    (the trace serialises their SPIKE records) and every layer gets events."""
    rng = np.random.default_rng(64)
    bundle = random_bundle(rng, sizes=SIZES, time_steps=4)
    for k in range(len(SIZES) - 2):
        bundle.layers[k] = LayerSpec(size=SIZES[k + 1], reset="subtract")
        bundle.bias[k][:] = 0
        bundle.threshold[k][:] = 1
    bundle.validate()
    on, off = random_counts(bundle, 6, rng, density=0.6)
    return bundle, on, off


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator"])
def test_cycles_equal_the_cycle_model_with_trace_on_and_off(simulator):
    require_simulator(simulator)
    bundle, on, off = _dense_bundle()
    gold = run_golden(bundle, on, off)
    geom = CoreGeometry.from_key(generated_design(bundle, HW)[1]["build_key"])
    assert geom.chunks == (1, 1, 1)           # every event: one weight word, one cycle
    spikes = [[s[:, b].numpy() for s in gold.spikes] for b in range(on.shape[1])]
    serialised = 0
    for trace in (True, False):
        rtl = rtl_evaluate(bundle, on, off, simulator=simulator, progress=False, hw=HW, trace=trace)
        assert rtl["bit_exact"], rtl["mismatches"][:3]
        expected = [cycle_estimate(geom, bundle.time_steps, gold.events_per_layer[:, b].tolist(),
                                   spikes[b], trace=trace) for b in range(on.shape[1])]
        assert rtl["cycles"].tolist() == expected
        serialised += sum(expected) * (1 if trace else -1)
    assert serialised > 0, "the trace must cost the serialisation of SPIKE records"
