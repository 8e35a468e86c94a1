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


@pytest.mark.rtl
def test_core_speed_bound_of_a_conv_model_counts_each_events_taps():
    """The throughput benchmark behind `bsnn bitstream`'s reports (bench/core_speed.py) gives a
    convolutional model the event bound of docs/performance.md, as `bsnn eval --engine rtl`
    does: a conv2d event costs its taps times ``ceil(C_out / P)``. Until 2bd161f it counted one
    ``ceil(C_out / P)`` per event, and the UP5K conv report read 1.487 x a bound that was too
    low (the full test set through the RTL: 1.014 x)."""
    from pathlib import Path

    from bsnn.bench.core_speed import measure
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.training.data import load_encoded

    require_simulator("verilator")
    root = Path(__file__).resolve().parents[2]
    model = root / "models" / "conv_mnist_up5k"
    hw = HardwareConfig.from_toml(root / "hdl" / "boards" / "icebreaker-conv.toml")
    hw = hw.replace(weight_memory="bram")
    result = measure(model, hw, limit=3)
    bundle = load_bundle(model)
    data = load_encoded(bundle, "mnist", "test", 3)
    rtl = rtl_evaluate(bundle, data.on, data.off, progress=False, hw=hw)
    assert [p["cycles"] for p in result["per_inference"]] == rtl["cycles"].tolist()
    assert [p["cycles_bound"] for p in result["per_inference"]] == rtl["cycles_bound"].tolist()
    summary = result["summary"]
    assert 1.0 <= summary["bound_ratio_mean"] <= 1.1, summary["bound_ratio_mean"]
    # every conv2d tap reads a weight word; the pool-free network reads one per synaptic cycle
    reads = result["per_inference"][0]["memory_reads"]
    assert reads["weight_words"] * hw.lanes == reads["weight_bits"] > 0
