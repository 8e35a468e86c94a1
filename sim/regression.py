"""The randomized differential regression: generated Verilog vs the golden model, spike for spike.

Each build (one compiled simulator per shape) serves many random bundles: the first runs from
the memory contents the Verilog was generated with, the others are loaded through the config
port. Inputs are random (including empty steps and OFF events), and the testbench stalls every
stream at random. ``make test`` runs it through ``tests/sim/test_rtl_regression.py``;
``bsnn sim --cases N --seed S`` runs the same cases without the test tree (soak runs).
"""
from __future__ import annotations

import numpy as np

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.events import events_from_counts, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import config_writes_for
from bsnn.sim.check import compare_sample
from bsnn.sim.rtl_eval import generated_design
from bsnn.sim.runner import run_job

# (sizes, v_width, c_width, bias_width, lanes[, neuron_lanes[, neuron_pipeline]]): a single layer,
# a deep one, lanes wider than a layer and a layer wider than the lanes, narrow widths that
# saturate, and U > 1 neuron-update lanes with padding groups; and the widths at their limits
# (2 bits, where everything saturates, and 32 bits).
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
SIMULATORS = ("verilator", "icarus")


def bundles_per_build(cases: int) -> int:
    """Random bundles per build so that all builds together run at least ``cases`` samples."""
    if cases < 1:
        raise ValueError(f"cases must be at least 1, got {cases}")
    return max(1, -(-cases // (len(BUILDS) * SAMPLES_PER_BUNDLE)))


def case_seed(seed: int, build_index: int, simulator: str) -> int:
    return seed * 10_000 + 1000 * build_index + (7 if simulator == "icarus" else 3)


def run_build(simulator: str, build_index: int, n_bundles: int, seed: int = 0) -> list[str]:
    """Run ``n_bundles`` random bundles on build ``build_index``; returns the mismatches (empty = pass)."""
    rng_seed = case_seed(seed, build_index, simulator)
    rng = np.random.default_rng(rng_seed)
    sizes, v_width, c_width, bias_width, lanes, *extra = BUILDS[build_index]
    bundles = [random_bundle(rng, sizes=sizes, v_width=v_width, c_width=c_width,
                             bias_width=bias_width, max_input_events=2 * sizes[0])
               for _ in range(n_bundles)]
    hw = HardwareConfig(lanes=lanes, neuron_lanes=extra[0] if extra else 1,
                        neuron_pipeline=extra[1] if len(extra) > 1 else "short")
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
    job = {"build_key": manifest["build_key"], "programs": programs, "seed": rng_seed,
           "stall": {"p_idle": 0.3, "p_block": 0.3}, "max_cycles": 200_000}
    result = run_job(verilog, job, simulator)
    failures = []
    for i, ((bundle, golden), prog) in enumerate(zip(goldens, result["programs"])):
        for b, sample in enumerate(prog["samples"]):
            problem = compare_sample(bundle, golden, b, sample)
            if problem:
                failures.append(
                    f"build {build_index} bundle {i} sample {b} on {simulator}: {problem} "
                    f"(reproduce: bsnn sim --simulator {simulator} --seed {seed} "
                    f"--cases {n_bundles * len(BUILDS) * SAMPLES_PER_BUNDLE})")
    return failures
