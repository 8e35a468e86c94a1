"""The randomized differential regression: generated Verilog vs the golden model, spike for spike.

Each build (one compiled simulator per shape) serves many random bundles: the first runs from
the memory contents the Verilog was generated with, the others are loaded through the config
port. Inputs are random (including empty steps and OFF events), and the testbench stalls every
stream at random. ``make test`` runs it through ``tests/sim/test_rtl_regression.py``;
``bsnn sim --cases N --seed S`` runs the same cases without the test tree (soak runs).
"""
from __future__ import annotations

import numpy as np

from dataclasses import replace

from bsnn.firmware_export.bundle import LayerSpec, _random_layer_modes, random_bundle
from bsnn.firmware_export.spatial import output_shape
from bsnn.firmware_export.events import events_from_counts, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import config_writes_for
from bsnn.sim.check import compare_sample
from bsnn.sim.rtl_eval import generated_design
from bsnn.sim.runner import run_job

# (sizes, v_width, c_width, bias_width, lanes[, neuron_lanes[, neuron_pipeline[, result_queue]]]): a single layer,
# a deep one, lanes wider than a layer and a layer wider than the lanes, narrow widths that
# saturate, and U > 1 neuron-update lanes with padding groups; and the widths at their limits
# (2 bits, where everything saturates, and 32 bits); and the parallel core of the ECP5
# (hdl/boards/ulx3s-85f-parallel.toml: P = 400, U = 16, every layer one accumulator word, so each
# event updates the word the one before it updated, and its non-stalling neuron banks behind the
# result queue); the result queue also on a small build that both simulators run.
BUILDS = [
    ([12, 10, 6], 8, 6, 4, 4),
    ([20, 16, 11, 5], 10, 9, 6, 8),
    ([9, 3], 5, 4, 3, 8),
    ([20, 13, 11, 5], 10, 9, 6, 8, 4, "long"),
    ([8, 6, 4], 2, 2, 2, 4),
    ([8, 7, 3], 32, 32, 32, 8),
    ([24, 300, 45, 7], 10, 9, 6, 400, 16, "long", True),
    ([16, 19, 9, 5], 8, 7, 5, 8, 2, "short", True),
]
# Builds that run on Verilator only: Icarus simulates the 400-lane datapath bit by bit (over 15
# minutes for one bundle; 25 s a sample even at 64 lanes), too slow for the suite.
VERILATOR_ONLY = {6}
SAMPLES_PER_BUNDLE = 2
DEFAULT_CASES = 256   # per simulator: 8 builds x 16 bundles x 2 samples (Verilator; Icarus skips build 6)
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
                        neuron_pipeline=extra[1] if len(extra) > 1 else "short",
                        result_queue=extra[2] if len(extra) > 2 else False)
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


# Convolutional builds (docs/semantics.md section 10): (input shape, input polarity, layers as
# (kind, channels, kernel, stride, padding) or ("dense", size), widths (v, c, bias), lanes[,
# {"max_input_events": bundles' capacity, "hw": more HardwareConfig fields}]).
# Odd map sizes, stride 2 and 3, padding, 1 x 1 kernels, overlapping and non-overlapping OR
# pooling, channel counts that are not multiples of the lanes, uncovered input positions, a
# conv2d output layer, and both input polarity rules.
CONV_BUILDS = [
    ((1, 7, 6), "xnor", [("conv2d", 5, 3, 1, 1), ("pool2d", None, 2, 2, 0), ("conv2d", 3, 1, 1, 0),
                         ("dense", 4)], (10, 9, 6), 4),
    ((2, 5, 5), "channels", [("conv2d", 6, (3, 2), 2, (1, 0)), ("pool2d", None, (2, 1), 1, 0),
                             ("dense", 3)], (12, 10, 5), 2),
    ((3, 6, 5), "xnor", [("conv2d", 9, (2, 3), (2, 1), (0, 2)), ("pool2d", None, 3, 2, 1),
                         ("conv2d", 2, 2, 1, 1)], (8, 8, 4), 8),
    # the iCE40UP5K core of the 99.30 % strided network (hdl/boards/icebreaker-conv-spram.toml):
    # neuron state and spike queue on one port, accumulators split by fan-in (a capacity of 12
    # input events keeps conv1's sums in 5 bits, conv2's 54 sources need 7)
    ((1, 8, 8), "xnor", [("conv2d", 6, 5, 2, 2), ("conv2d", 6, 3, 2, 1), ("dense", 9), ("dense", 4)],
     (10, 9, 6), 4, {"max_input_events": 12, "hw": {"neuron_state_memory": "single_port",
                                                   "spike_queue_memory": "single_port",
                                                   "accumulator_split": True}}),
]


def conv_layers(rng, input_shape, spec, v_width, c_width) -> list:
    """The layers of a convolutional build with modes drawn at random (the build fixes the
    shapes; modes, like weights and parameters, are loaded through the config port)."""
    layers, shape = [], tuple(input_shape)
    for kind, *rest in spec:
        if kind == "dense":
            layers.append(LayerSpec(size=rest[0], **_random_layer_modes(rng, v_width, c_width)))
            continue
        channels, kernel, stride, padding = rest
        if kind == "conv2d":
            layer = LayerSpec.conv2d(shape, channels, kernel, stride, padding,
                                     **_random_layer_modes(rng, v_width, c_width))
        else:
            layer = LayerSpec.pool2d(shape, kernel, stride, padding)
        layers.append(layer)
        shape = output_shape(layer, shape)
    return layers


def conv_bundle(rng, build_index: int):
    """A random bundle of convolutional build ``build_index``."""
    input_shape, polarity, spec, (v, c, b), _, *extra = CONV_BUILDS[build_index]
    capacity = {"max_input_events": extra[0]["max_input_events"]} if extra else {}
    return random_bundle(rng, spatial=True, input_shape=input_shape, input_polarity=polarity,
                         layers=conv_layers(rng, input_shape, spec, v, c), v_width=v, c_width=c,
                         bias_width=b, **capacity)


def run_conv_build(simulator: str, build_index: int, n_bundles: int, seed: int = 0) -> list[str]:
    """As :func:`run_build` for convolutional build ``build_index`` (``CONV_BUILDS``)."""
    rng_seed = case_seed(seed, 100 + build_index, simulator)
    rng = np.random.default_rng(rng_seed)
    bundles = [conv_bundle(rng, build_index) for _ in range(n_bundles)]
    _, _, _, _, lanes, *extra = CONV_BUILDS[build_index]
    hw = HardwareConfig(lanes=lanes, **(extra[0]["hw"] if extra else {}))
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
                failures.append(f"conv build {build_index} bundle {i} sample {b} on {simulator}: "
                                f"{problem} (seed {seed})")
    return failures
