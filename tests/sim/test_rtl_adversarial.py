"""Adversarial RTL cases: input the core must refuse (and report), resets in the middle of an
inference, back-to-back inferences, every neuron firing, saturation in both directions, and
steps filled exactly to capacity. Spike-exact against the golden model, on both simulators."""
import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import counts_from_events, events_from_counts, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import config_writes_for
from bsnn.hdl.layouts import ErrorBit
from bsnn.sim.check import compare_sample
from bsnn.sim.rtl_eval import generated_design
from bsnn.sim.runner import run_job
from tests.sim.simulators import require_simulator

SIZES = [10, 6, 4]
CAP = 8          # max_input_events of every bundle here
SIMULATORS = ["verilator", "icarus"]


def _bundle(rng, **kw):
    return random_bundle(rng, sizes=SIZES, v_width=6, c_width=5, bias_width=4, max_input_events=CAP, **kw)


def _run(simulator, bundles_and_samples, seed, stall=0.3):
    """bundles_and_samples: list of (bundle, [sample dict]); the first bundle is the build's."""
    verilog, manifest = generated_design(bundles_and_samples[0][0], HardwareConfig(lanes=4))
    geom = CoreGeometry.from_key(manifest["build_key"])
    programs = [{"config_writes": [] if i == 0 else [list(w) for w in config_writes_for(b, geom)],
                 "samples": samples} for i, (b, samples) in enumerate(bundles_and_samples)]
    job = {"build_key": manifest["build_key"], "programs": programs, "seed": seed,
           "stall": {"p_idle": stall, "p_block": stall}, "max_cycles": 100_000}
    return [p["samples"] for p in run_job(verilog, job, simulator)["programs"]]


def _accepted(bundle, steps):
    """What the core keeps of ``steps`` (docs/semantics.md section 8) and the error it raises."""
    kept, error = [], 0
    for step in steps:
        valid = [e for e in step if 0 <= e[0] < bundle.input_size]
        if len(valid) != len(step):
            error |= 1 << ErrorBit.INDEX
        if len(valid) > bundle.max_input_events:
            error |= 1 << ErrorBit.OVERFLOW
        kept.append(valid[:bundle.max_input_events])
    return kept, error


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_refused_input_is_dropped_and_reported(simulator):
    require_simulator(simulator)
    rng = np.random.default_rng(11)
    bundle = _bundle(rng, time_steps=4)
    cases = []
    for case in range(8):
        steps = []
        for t in range(bundle.time_steps):
            n = int(rng.integers(0, CAP + 6))
            step = [(int(rng.integers(0, SIZES[0])), int(rng.integers(0, 2))) for _ in range(n)]
            if case % 2 and rng.random() < 0.6:   # indices the core cannot address
                step.insert(int(rng.integers(0, len(step) + 1)), (int(rng.integers(SIZES[0], 16)), 1))
            steps.append(step)
        cases.append(steps)
    cases.append([[]] * bundle.time_steps)                         # nothing at all
    cases.append([[(i % SIZES[0], 1) for i in range(CAP)]] * bundle.time_steps)   # exactly full
    samples = [{"steps": [[list(e) for e in s] for s in steps]} for steps in cases]
    rtl = _run(simulator, [(bundle, samples)], seed=5)[0]
    failures = []
    errors_seen = 0
    for i, steps in enumerate(cases):
        kept, error = _accepted(bundle, steps)
        errors_seen |= error
        on, off = counts_from_events(bundle, [kept])
        problem = compare_sample(bundle, run_golden(bundle, on, off), 0, rtl[i], expected_error=error)
        if problem:
            failures.append(f"case {i}: {problem}")
    assert errors_seen == 0b11, "the cases must exercise both error bits"
    assert not failures, "\n".join(failures)


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_reset_mid_inference_and_back_to_back(simulator):
    require_simulator(simulator)
    rng = np.random.default_rng(12)
    bundle = _bundle(rng, time_steps=6)
    on, off = random_counts(bundle, 6, rng, density=0.5)
    golden = run_golden(bundle, on, off)
    samples = [{"steps": [[list(e) for e in s] for s in events_from_counts(on, off, b)]} for b in range(6)]
    samples[1]["abort_after"] = 7
    samples[3]["abort_after"] = 40
    rtl = _run(simulator, [(bundle, samples)], seed=6)[0]
    for b in (0, 2, 4, 5):    # every inference after a reset is exact again
        assert compare_sample(bundle, golden, b, rtl[b]) is None, f"sample {b}"
    assert rtl[1]["aborted"] and rtl[3]["aborted"]


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_every_neuron_firing_and_saturation_both_ways(simulator):
    require_simulator(simulator)
    rng = np.random.default_rng(13)
    T = 5
    programs = []
    for case in range(4):
        up = case % 2 == 0
        layers = [LayerSpec(size=n, current=case >= 2, leak_v=0, leak_c=0,
                            reset="none" if case == 1 else "subtract", fire_once=case == 3)
                  for n in SIZES[1:]]
        bundle = _bundle(rng, layers=layers, time_steps=T, readout=("spike_count", "potential",
                                                                   "first_spike", "spike_count")[case])
        bundle.weights = [np.full_like(w, 1 if up else 0) for w in bundle.weights]
        bundle.bias = [np.full_like(b, 7 if up else -8) for b in bundle.bias]
        bundle.threshold = [np.ones_like(t) if up else np.full_like(t, 31) for t in bundle.threshold]
        bundle.validate()
        full = torch.zeros(T, 1, SIZES[0], dtype=torch.int64)
        full[:, :, :CAP] = 1
        golden = run_golden(bundle, full)
        if up and case == 0:
            assert all(s.all() for s in golden.spikes), "every neuron must fire every step"
        if not up:
            assert (golden.v[0] == -32).all(), "the potential must saturate at the bottom"
        programs.append((bundle, [{"steps": [[list(e) for e in s] for s in events_from_counts(full, None, 0)]}],
                         golden))
    rtl = _run(simulator, [(b, s) for b, s, _ in programs], seed=7)
    for case, ((bundle, _, golden), got) in enumerate(zip(programs, rtl)):
        assert compare_sample(bundle, golden, 0, got[0]) is None, f"case {case}"
