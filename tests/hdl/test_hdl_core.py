"""The whole core against the golden model (bsnn.firmware_export.golden.run_golden)."""
import numpy as np
import pytest
import torch
from amaranth.hdl import ClockDomain, Elaboratable, Module

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.core import BSNNCore
from bsnn.hdl.generate import config_writes, cycle_estimate
from bsnn.hdl.layouts import ConfigTarget, ErrorBit, GlobalAddress, ResultKind

from hdl_testutil import (CoreRunner, decode_records, events_of, infer_inline, run_sim,
                          spike_matrix, stream_put)


def check_against_golden(bundle, result, gold, b, trace=True):
    L = len(bundle.layers)
    T = bundle.time_steps
    for l in range(L):
        got = spike_matrix(result["spikes"][l], T, bundle.layers[l].size)
        want = gold.spikes[l][:, b].numpy() if trace else np.zeros_like(got)
        assert np.array_equal(got, want), \
            f"layer {l + 1} spikes differ\n{got.astype(int)}\n{want.astype(int)}"
    pots = result["potentials"]
    assert [i for i, _ in pots] == list(range(bundle.layers[-1].size))
    assert [v for _, v in pots] == gold.v[-1][b].tolist()
    assert result["cls"][0] == int(gold.prediction[b])
    assert result["cls"][1] == int(gold.v[-1][b][result["cls"][0]])
    for r in result["records"]:
        if r.kind != ResultKind.SPIKE:
            assert (r.step, r.layer) == (T - 1, L)


def counts_of(bundle, steps):
    """ON/OFF count tensors [T, 1, N_0] of one sample's event lists."""
    on = torch.zeros(bundle.time_steps, 1, bundle.input_size, dtype=torch.int64)
    off = torch.zeros_like(on)
    for t, ev in enumerate(steps):
        for i, p in ev:
            (on if p else off)[t, 0, i] += 1
    return on, off


CASES = [  # sizes, lanes[, neuron_lanes[, neuron_pipeline[, result_queue]]]
    ([9, 7, 5], 4),
    ([9, 7, 5], 4, 2),
    ([6, 11, 3, 4], 4, 4),
    ([5, 17, 9, 2], 16, 8),
    ([3, 1, 1, 2], 8, 2),    # one-neuron hidden layers, padding lanes
    ([4, 8, 16], 8, 8),
    ([9, 7, 5], 4, 1, "long"),   # long neuron pipeline
    ([6, 11, 3, 4], 4, 2, "long"),
    ([1, 1], 1, 1, "long"),
    ([6, 11, 3, 4], 3),
    ([12, 6], 8),
    ([5, 17, 9, 2], 16),
    ([1, 1], 1),             # degenerate: one input, one neuron
    ([3, 1, 1, 2], 8),       # one-neuron hidden layers
    ([4, 8, 16], 8),         # exact multiples of P
    ([10, 37, 21, 6], 8, 2, "short", True),   # the result queue under the runner's stalls
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_core_matches_golden_with_stalls(case):
    sizes, lanes, *u = CASES[case]
    rng = np.random.default_rng(case)
    bundle = random_bundle(rng, sizes=sizes)
    core = BSNNCore(bundle, HardwareConfig(lanes=lanes, neuron_lanes=u[0] if u else 1,
                                           neuron_pipeline=u[1] if len(u) > 1 else "short",
                                           result_queue=u[2] if len(u) > 2 else False))
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    jobs = [("infer", events_of(on, off, b, rng)) for b in range(2)]
    results = CoreRunner(core, rng, p_valid=0.6, p_ready=0.6).run(jobs)
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)
        assert res["error"] == 0


@pytest.mark.parametrize("U", [1, 4])
def test_many_bundles_loaded_through_config_port(U):
    """One build, several random bundles of its build key, loaded with config_writes."""
    rng = np.random.default_rng(42 + U)
    sizes = [8, 10, 6]
    base = random_bundle(rng, sizes=sizes, v_width=9, c_width=7, bias_width=5)
    hw = HardwareConfig(lanes=4, max_input_events=2 * sizes[0], neuron_lanes=U)
    core = BSNNCore(base, hw)
    jobs, expected = [], []
    for k in range(4):
        bundle = random_bundle(rng, sizes=sizes, v_width=9, c_width=7,
                               bias_width=int(rng.integers(2, 6)))
        on, off = random_counts(bundle, 1, rng, density=float(rng.uniform(0.2, 0.6)))
        jobs += [("config", config_writes(bundle, build=core.geom)),
                 ("infer", events_of(on, off, 0, rng))]
        expected.append((bundle, run_golden(bundle, on, off)))
    results = CoreRunner(core, rng, p_valid=0.8, p_ready=0.8).run(jobs)
    for res, (bundle, gold) in zip(results, expected):
        check_against_golden(bundle, res, gold, 0)


@pytest.mark.parametrize("sizes,lanes,U", [([9, 7, 5], 4, 1), ([6, 11, 3, 4], 3, 1), ([4, 1], 1, 1),
                                           ([8, 2, 5], 1, 1), ([6, 3, 1, 2], 2, 1),
                                           ([9, 7, 5], 4, 4), ([6, 11, 3, 4], 4, 2),
                                           ([6, 3, 1, 2], 2, 2), ([8, 20, 9], 8, 8),
                                           # neuron clear longer than step 0's accumulation
                                           ([2, 40, 30], 8, 1), ([2, 40, 30], 8, 2),
                                           ([9, 7, 5], 4, (4, "long")), ([1, 1], 1, (1, "long")),
                                           ([2, 40, 30], 8, (2, "long")),
                                           # the parallel core: every layer one accumulator word
                                           ([5, 60, 40, 10], 64, (16, "long")),
                                           # ... with the result queue (the same cycles)
                                           ([5, 60, 40, 10], 64, (16, "long", True)),
                                           ([2, 40, 30], 8, (1, "short", True)),
                                           # single-port neuron state (SPRAM): 2 G - 1 a layer
                                           ([9, 7, 5], 4, (1, "short", False, "single_port")),
                                           ([2, 40, 30], 8, (1, "long", False, "single_port")),
                                           ([2, 40, 30], 8, (1, "short", True, "single_port")),
                                           ([6, 3, 1, 2], 2, (1, "long", True, "single_port"))])
def test_cycle_formula(sizes, lanes, U):
    defaults = (1, "short", False, "bram")
    U, pipeline, queue, state = (*U, *defaults[len(U):]) if isinstance(U, tuple) else (U, *defaults[1:])
    rng = np.random.default_rng(sum(sizes))
    bundle = random_bundle(rng, sizes=sizes, time_steps=5)
    # Make the hidden layers spike densely (all neurons, back to back, in most steps): all
    # weights +1, ON events only, no bias, theta 1, no reset.
    for k in range(len(sizes) - 2):
        bundle.layers[k] = LayerSpec(size=sizes[k + 1], reset="none")
        bundle.weights[k][:] = 1
        bundle.bias[k][:] = 0
        bundle.threshold[k][:] = 1
    bundle.validate()
    core = BSNNCore(bundle, HardwareConfig(lanes=lanes, neuron_lanes=U, neuron_pipeline=pipeline,
                                           result_queue=queue, neuron_state_memory=state))
    on, _ = random_counts(bundle, 2, rng, density=0.5)
    off = torch.zeros_like(on)
    gold = run_golden(bundle, on, off)
    results = CoreRunner(core, rng).run([("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)
        assert res["cycles"] == cycle_estimate(core.geom, bundle.time_steps,
                                               gold.events_per_layer[:, b].tolist(),
                                               [s[:, b].numpy() for s in gold.spikes])


@pytest.mark.parametrize("U", [1, 2])
def test_trace_off_build_and_runtime_trace_bit(U):
    rng = np.random.default_rng(5)
    bundle = random_bundle(rng, sizes=[7, 6, 4])
    on, off = random_counts(bundle, 1, rng)
    gold = run_golden(bundle, on, off)
    steps = events_of(on, off, 0, rng)
    core = BSNNCore(bundle, HardwareConfig(lanes=4, trace=False, neuron_lanes=U))
    res = CoreRunner(core, rng).run([("infer", steps)])[0]
    check_against_golden(bundle, res, gold, 0, trace=False)
    core = BSNNCore(bundle, HardwareConfig(lanes=4, trace=True, neuron_lanes=U))
    res = CoreRunner(core, rng, p_ready=0.5).run(
        [("config", [(ConfigTarget.GLOBAL, GlobalAddress.TRACE, 0)]), ("infer", steps),
         ("config", [(ConfigTarget.GLOBAL, GlobalAddress.TRACE, 1)]), ("infer", steps)])
    check_against_golden(bundle, res[0], gold, 0, trace=False)
    check_against_golden(bundle, res[1], gold, 0, trace=True)


def test_errors_drop_and_flag_events():
    """Index >= N_0 and events beyond max_input_events are dropped and flagged; the rest of the
    inference is exactly the golden model on the remaining events."""
    rng = np.random.default_rng(11)
    sizes = [6, 4]     # one layer: every input event shows in the output potentials
    bundle = random_bundle(rng, sizes=sizes, max_input_events=5, time_steps=3)
    # Capacity above the bundle's limit: the run-time register must still enforce 5.
    core = BSNNCore(bundle, HardwareConfig(lanes=2, max_input_events=9))
    T = bundle.time_steps
    clean = [[(int(rng.integers(0, 6)), int(rng.integers(0, 2))) for _ in range(int(rng.integers(0, 6)))]
             for _ in range(T)]
    bad_index = [list(ev) for ev in clean]
    bad_index[0] = bad_index[0][:2] + [(6, 1), ((1 << core.geom.idx_w) - 1, 0)] + bad_index[0][2:]
    overflow = [list(ev) for ev in clean]
    overflow[T - 1] = [(1, 1)] * 5 + [(2, 0), (3, 1)]       # last two are over the limit
    kept_overflow = [list(ev) for ev in clean]
    kept_overflow[T - 1] = [(1, 1)] * 5
    runs = [(clean, clean, 0), (bad_index, clean, 1 << ErrorBit.INDEX),
            (overflow, kept_overflow, 1 << ErrorBit.OVERFLOW), (clean, clean, 0)]
    results = CoreRunner(core, rng, p_valid=0.7, p_ready=0.7).run(
        [("infer", sent) for sent, _, _ in runs])
    for res, (_, kept, err) in zip(results, runs):
        on, off = counts_of(bundle, kept)
        check_against_golden(bundle, res, run_golden(bundle, on, off), 0)
        assert res["error"] == err


class ResetHarness(Elaboratable):
    """The core in an explicit sync domain whose reset the testbench can drive."""
    def __init__(self, core):
        self.core = core
        self.cd = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        m.submodules.core = self.core
        return m


def test_reset_mid_inference_then_clean_inference():
    """Load bundle B into a build of A, abandon an inference with rst: B (memories and the
    configuration registers) survives, and the next inferences are exact."""
    rng = np.random.default_rng(21)
    base = random_bundle(rng, sizes=[8, 9, 5], v_width=10, c_width=9, bias_width=4)
    bundle = random_bundle(rng, sizes=[8, 9, 5], v_width=10, c_width=9, bias_width=4)
    core = BSNNCore(base, HardwareConfig(lanes=4))
    top = ResetHarness(core)
    on, off = random_counts(bundle, 2, rng, density=0.5)
    gold = run_golden(bundle, on, off)
    steps = [events_of(on, off, b, rng) for b in range(2)]
    got = []

    async def bench(ctx):
        await stream_put(ctx, core.i_config, [{"target": t, "address": a, "data": d}
                                              for t, a, d in config_writes(bundle, build=core.geom)])
        # Abandon an inference half-way (events partly fed, results not taken), reset.
        ctx.set(core.start, 1)
        await ctx.tick()
        ctx.set(core.start, 0)
        items = [{"index": i, "polarity": p, "end_of_step": 0} for i, p in steps[0][0]]
        items.append({"index": 0, "polarity": 0, "end_of_step": 1})
        for it in items:
            ctx.set(core.i_events.valid, 1)
            ctx.set(core.i_events.payload, it)
            await ctx.tick().until(core.i_events.ready)
        ctx.set(core.i_events.valid, 0)
        await ctx.tick().repeat(int(rng.integers(1, 30)))
        ctx.set(top.cd.rst, 1)
        await ctx.tick()
        ctx.set(top.cd.rst, 0)
        assert not ctx.get(core.busy)
        for b in range(2):
            records, cycles, error = await infer_inline(ctx, core, steps[b], rng, 0.7, 0.7)
            got.append(decode_records(core.geom, records, cycles, error))

    run_sim(top, bench, deadline_cycles=20_000)
    for b in range(2):
        check_against_golden(bundle, got[b], gold, b)
        assert got[b]["error"] == 0


def test_config_refused_while_busy_and_start_ignored_while_busy():
    rng = np.random.default_rng(8)
    bundle = random_bundle(rng, sizes=[5, 4])
    core = BSNNCore(bundle, HardwareConfig(lanes=2))
    on, off = random_counts(bundle, 1, rng)
    gold = run_golden(bundle, on, off)
    steps = events_of(on, off, 0, rng)
    seen = {}

    async def bench(ctx):
        assert ctx.get(core.i_config.ready)
        ctx.set(core.start, 1)
        await ctx.tick()
        # start held high while busy: ignored; config refused while busy.
        for _ in range(5):
            assert ctx.get(core.busy) and not ctx.get(core.i_config.ready)
            await ctx.tick()
        ctx.set(core.start, 0)
        ctx.set(core.o_results.ready, 1)
        records = []
        pending = []
        for ev in steps:
            pending += [{"index": i, "polarity": p, "end_of_step": 0} for i, p in ev]
            pending.append({"index": 0, "polarity": 0, "end_of_step": 1})
        while not (records and records[-1].kind == ResultKind.CLASS):
            ctx.set(core.i_events.valid, bool(pending))
            if pending:
                ctx.set(core.i_events.payload, pending[0])
            _, _, iv, ir, ov, op = await ctx.tick().sample(core.i_events.valid, core.i_events.ready,
                                                           core.o_results.valid, core.o_results.payload)
            if iv and ir:
                pending.pop(0)
            if ov:
                records.append(op)
        seen["records"] = records
        assert ctx.get(core.done) and ctx.get(core.i_config.ready)
        await ctx.tick()
        assert not ctx.get(core.done)

    run_sim(core, bench, deadline_cycles=5_000)
    check_against_golden(bundle, decode_records(core.geom, seen["records"]), gold, 0)


@pytest.mark.parametrize("seed", range(16))
def test_random_bundles(seed):
    """Random shapes, modes, widths and readouts (random_bundle draws them all)."""
    rng = np.random.default_rng(1000 + seed)
    bundle = random_bundle(rng)
    core = BSNNCore(bundle, HardwareConfig(lanes=int(rng.choice([1, 2, 3, 8]))))
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    results = CoreRunner(core, rng, p_valid=0.8, p_ready=0.8).run(
        [("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)


def test_committed_default_model():
    """The repository's default model (784-64-10), P = 16: spikes, potentials, class, cycles."""
    from pathlib import Path
    from bsnn.firmware_export.bundle import load_bundle
    path = Path(__file__).resolve().parents[2] / "models" / "default"
    if not (path / "manifest.json").exists():
        pytest.skip("models/default not present")
    bundle = load_bundle(path)
    rng = np.random.default_rng(99)
    core = BSNNCore(bundle, HardwareConfig(lanes=16))
    on, off = random_counts(bundle, 2, rng, density=0.1)
    gold = run_golden(bundle, on, off)
    results = CoreRunner(core, rng).run([("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)
        assert res["cycles"] == cycle_estimate(core.geom, bundle.time_steps,
                                               gold.events_per_layer[:, b].tolist(),
                                               [s[:, b].numpy() for s in gold.spikes])


@pytest.mark.parametrize("readout", ["potential", "first_spike", "spike_count"])
def test_minimal_neuron_state(readout):
    """neuron_state = "minimal" stores neither current nor fired flags for a bundle that uses
    neither (first-spike readout then ranks by count != 0), and stays bit-exact."""
    from bsnn.hdl.config import BuildMismatch, CoreGeometry, check_fits
    rng = np.random.default_rng(6)   # a draw whose first-spike decisions differ from argmax v
    sizes = [10, 9, 6, 4]
    layers = [LayerSpec(size=n, leak_v=int(rng.integers(0, 3)), reset=r)
              for n, r in zip(sizes[1:], ["subtract", "zero", "none"])]
    bundle = random_bundle(rng, sizes=sizes, layers=layers, readout=readout, time_steps=6)
    hw = HardwareConfig(lanes=4, neuron_state="minimal", neuron_pipeline="long")
    core = BSNNCore(bundle, hw)
    assert not core.geom.state_current and not core.geom.state_fired
    on, off = random_counts(bundle, 3, rng)
    gold = run_golden(bundle, on, off)
    assert all(int(s.sum()) > 0 for s in gold.spikes)
    if readout == "first_spike":
        assert bool((gold.v[-1].argmax(1) != gold.prediction).any())
    jobs = [("infer", events_of(on, off, b, rng)) for b in range(3)]
    for b, res in enumerate(CoreRunner(core, rng, p_valid=0.7, p_ready=0.7).run(jobs)):
        check_against_golden(bundle, res, gold, b)
    # A bundle that needs the state the build lacks is refused by name.
    needy = random_bundle(rng, sizes=sizes, v_width=bundle.v_width, c_width=bundle.c_width,
                          layers=[LayerSpec(size=9, current=True), LayerSpec(size=6, fire_once=True,
                                                                            reset="none"),
                                  LayerSpec(size=4)])
    with pytest.raises(BuildMismatch, match="current.*fired|fired.*current|synaptic current"):
        check_fits(needy, core.geom)
    # ... and a minimal build of it keeps exactly what it needs.
    g = CoreGeometry.from_bundle(needy, hw)
    assert g.state_current and g.state_fired
    assert CoreGeometry.from_key(core.geom.key()) == core.geom


@pytest.mark.parametrize("bank_words", [2, 8])
def test_banked_weight_memory(bank_words):
    """Weights split into banks of consecutive words (weight_bank_words): bit-exact, same cycles."""
    rng = np.random.default_rng(bank_words)
    bundle = random_bundle(rng, sizes=[9, 7, 5])
    core = BSNNCore(bundle, HardwareConfig(lanes=4, weight_bank_words=bank_words))
    assert core.geom.weight_depth > 2 * bank_words
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    jobs = [("infer", events_of(on, off, b, rng)) for b in range(2)]
    for b, res in enumerate(CoreRunner(core, rng, p_valid=0.7, p_ready=0.7).run(jobs)):
        check_against_golden(bundle, res, gold, b)
