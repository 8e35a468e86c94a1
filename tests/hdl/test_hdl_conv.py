"""Convolutional builds (docs/semantics.md section 10): the tap generator on its own, and the
whole core against the golden model on random conv2d / pool2d bundles, with random stalls, and
its cycle count against the cycle formula."""
import dataclasses

import numpy as np
import pytest

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.core import BSNNCore
from bsnn.hdl.generate import cycle_estimate, cycles_bound, layer_work, unit_counts
from bsnn.hdl.taps import OpMode, TapGenerator

from hdl_testutil import CoreRunner, events_of, run_sim
from test_hdl_core import check_against_golden


def expected_ops(g: CoreGeometry, l: int, unit: int, polarity: int):
    """The operations of one event into layer ``l``, read off the semantics (section 10.3 / 10.4
    from the event's side: every kernel offset whose window exists), in the generator's order
    (kernel rows from the last, columns from the last)."""
    P = g.lanes
    if g.input_channels and l == 0:
        unit, polarity = unit + polarity * g.sizes[0], 1
    if g.kinds[l] == "dense":
        return [(g.weight_base[l] + unit * g.chunks[l], 0, OpMode.WEIGHTS, 0, polarity, 0)]
    kind, (c_in, h, w), (c_out, ho, wo), (kh, kw), (sh, sw), (ph, pw) = g.spatial[l]
    c, rest = divmod(unit, h * w)
    iy, ix = divmod(rest, w)
    ch = g.chunks[l]
    ops = []
    for ky in reversed(range(kh)):
        for kx in reversed(range(kw)):
            ny, nx = iy + ph - ky, ix + pw - kx
            if ny < 0 or nx < 0 or ny % sh or nx % sw or ny // sh >= ho or nx // sw >= wo:
                continue
            pos = (ny // sh) * wo + nx // sw
            if kind == "conv2d":
                ops.append((g.weight_base[l] + ((c * kh + ky) * kw + kx) * ch, pos * ch,
                            OpMode.WEIGHTS, 0, polarity, 0))
            else:
                ops.append((None, pos * ch + c // P, OpMode.LANE, c % P, None, 1))
    return ops or [(None, None, OpMode.NOTHING, None, None, 1)]


@pytest.mark.parametrize("seed", range(4))
def test_tap_generator_with_stalls(seed):
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng, spatial=True)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=int(rng.choice([1, 2, 4, 8]))))
    dut = TapGenerator(g)
    plan = []
    for l in range(g.n_layers):
        n = g.units_in[l] // (2 if g.input_channels and l == 0 else 1)
        events = [(int(rng.integers(n)), int(rng.integers(2))) for _ in range(12)]
        plan.append((l, events))
    got = {}

    async def bench(ctx):
        for l, events in plan:
            ctx.set(dut.layer, l)
            items = [{"index": i, "polarity": p, "flush": 0} for i, p in events]
            items.append({"index": 0, "polarity": 0, "flush": 1})
            out = []
            # feed and collect in one loop: the generator's queues stall when not drained
            pending = list(items)
            while not (out and out[-1].flush):
                if pending and rng.random() < 0.6:
                    ctx.set(dut.i_event.valid, 1)
                    ctx.set(dut.i_event.payload, pending[0])
                else:
                    ctx.set(dut.i_event.valid, 0)
                ready = rng.random() < 0.6
                ctx.set(dut.o_op.ready, ready)
                _, _, iv, ir, ov, op = await ctx.tick().sample(dut.i_event.valid, dut.i_event.ready,
                                                               dut.o_op.valid, dut.o_op.payload)
                if iv and ir:
                    pending.pop(0)
                if ov and ready:
                    out.append(op)
            ctx.set(dut.i_event.valid, 0)
            ctx.set(dut.o_op.ready, 0)
            got[l] = out

    run_sim(dut, bench)
    for l, events in plan:
        want = [op for i, p in events for op in expected_ops(g, l, i, p)]
        ops = got[l][:-1]
        assert got[l][-1].flush and not any(o.flush for o in ops)
        assert len(ops) == len(want), f"layer {l}: {len(ops)} operations, expected {len(want)}"
        for o, (row, acc, mode, lane, pol, single) in zip(ops, want):
            assert o.mode == mode and o.single == single
            if row is not None:
                assert o.row == row
            if acc is not None:
                assert o.acc == acc
            if lane is not None and mode == OpMode.LANE:
                assert o.lane == lane
            if pol is not None:
                assert o.polarity == pol


# (seed, memory of the neuron state and the spike queue): "single_port" is the iCE40UP5K SPRAM
# build's logic on an inferred RAM (hdl/single_port.py), with the accumulators split by fan-in
SINGLE_PORT = [(s, "bram") for s in range(6)] + [(s, "single_port") for s in range(6, 10)]


@pytest.mark.parametrize("seed,memory", SINGLE_PORT)
def test_conv_core_matches_golden_with_stalls(seed, memory):
    rng = np.random.default_rng(100 + seed)
    bundle = random_bundle(rng, spatial=True)
    core = BSNNCore(bundle, HardwareConfig(lanes=int(rng.choice([1, 2, 4, 8])),
                                           neuron_pipeline=str(rng.choice(["short", "long"])),
                                           **_memories(memory)))
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    results = CoreRunner(core, rng, p_valid=0.6, p_ready=0.6).run(
        [("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)
        assert res["error"] == 0


def _memories(memory: str) -> dict:
    return ({} if memory == "bram" else
            {"neuron_state_memory": memory, "spike_queue_memory": memory, "accumulator_split": True})


@pytest.mark.parametrize("seed,memory", [(s, "bram") for s in range(5)]
                         + [(s, "single_port") for s in range(5, 8)])
def test_conv_cycle_formula(seed, memory):
    """No stalls: the cycles equal cycle_estimate exactly, and are at least the event bound."""
    rng = np.random.default_rng(200 + seed)
    bundle = random_bundle(rng, spatial=True)
    core = BSNNCore(bundle, HardwareConfig(lanes=int(rng.choice([1, 2, 4, 8])),
                                           neuron_pipeline=str(rng.choice(["short", "long"])),
                                           **_memories(memory)))
    on, off = random_counts(bundle, 2, rng, density=0.5)
    gold = run_golden(bundle, on, off)
    results = CoreRunner(core, rng).run([("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)
        counts = unit_counts(bundle, on, off, gold.spikes, b)
        assert res["cycles"] == cycle_estimate(core.geom, bundle.time_steps, None, counts=counts)
        bound = cycles_bound(core.geom, bundle.time_steps, None, counts=counts)
        assert bound <= res["cycles"]
        # the conv2d term of the bound is the golden model's SOPs / C_out * ceil(C_out / P)
        for l, layer in enumerate(bundle.layers):
            if layer.kind == "conv2d":
                sops = int(gold.sops_per_layer[l, b])
                assert layer_work(core.geom, l, counts[l])[1] == sops // layer.channels * core.geom.chunks[l]


def test_lane_width_from_the_fan_in_bound():
    """The accumulator lanes are as wide as the largest fan-in needs (docs/semantics.md 10.7),
    not the largest map: a conv2d neuron's sources (padding adds none, a kernel larger than its
    input reaches only the input), a pool2d window's, a dense layer's N_{l-1}, layer 1's
    capacity."""
    rng = np.random.default_rng(3)
    shape = (1, 6, 6)
    c1 = LayerSpec.conv2d(shape, 8, 3, padding=1)          # 8x6x6 = 288 neurons
    p1 = LayerSpec.pool2d((8, 6, 6), 2)                     # 8x3x3
    c2 = LayerSpec.conv2d((8, 3, 3), 4, 5, padding=2)       # 5x5 kernel on a 3x3 map: 8 * 3 * 3
    out = LayerSpec(size=3)
    bundle = random_bundle(rng, spatial=True, input_shape=shape, layers=[c1, p1, c2, out],
                           max_input_events=20)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4))
    assert g.fan_in == (20, 4, 72, 36)
    assert g.syn_w == 8                  # 72 needs 7 bits, signed 8; N_1 = 288 would give 10


def test_conv_sum_at_its_fan_in_bound_is_exact():
    """Every source of a conv2d neuron spikes and every weight is +1, so its synaptic input is
    exactly its fan-in, 16, the largest bound of the network and a power of two: lanes one bit
    narrower would wrap it to -16 (checked: the test then fails). Spike-exact with stalls."""
    rng = np.random.default_rng(5)
    shape = (1, 4, 4)
    c1 = LayerSpec.conv2d(shape, 4, 3, padding=1)            # 4x4x4, each spikes every step
    c2 = LayerSpec.conv2d((4, 4, 4), 1, 2, stride=2)         # fan-in 4 * 2 * 2 = 16
    out = LayerSpec(size=3)
    bundle = random_bundle(rng, spatial=True, input_shape=shape, layers=[c1, c2, out],
                           max_input_events=12, v_width=8, c_width=8, bias_width=4, time_steps=3)
    c1, c2, out = bundle.layers
    bundle = dataclasses.replace(
        bundle, layers=[dataclasses.replace(c1, reset="zero", current=False, leak_v=0),
                        dataclasses.replace(c2, reset="zero", current=False, leak_v=0), out],
        weights=[np.ones_like(bundle.weights[0]), np.ones_like(bundle.weights[1]), bundle.weights[2]],
        bias=[np.ones(4, np.int64), np.zeros(1, np.int64), bundle.bias[2]],
        threshold=[np.ones(4, np.int64), np.full(1, 16, np.int64), bundle.threshold[2]])
    core = BSNNCore(bundle, HardwareConfig(lanes=4))
    assert max(core.geom.fan_in) == 16 and core.geom.syn_w == 6
    on, off = random_counts(bundle, 2, rng, density=0.5, polarity=False)   # ON events: I >= 0
    gold = run_golden(bundle, on, off)
    assert gold.spikes[0].all() and gold.spikes[1].all()          # I = 16 >= theta = 16 in every step
    results = CoreRunner(core, rng, p_valid=0.6, p_ready=0.6).run(
        [("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)


def _split_bundle(rng, all_spiking: bool):
    """1x6x6 -> conv 8@3x3 p1 (72 accumulator words at P = 4, fan-in: the capacity 3) -> conv
    2@2x2 s2 (9 words, fan-in 32) -> dense 3: the split keeps 3 bits in every word, 4 more
    only in words 0 .. 8."""
    shape = (1, 6, 6)
    c1 = LayerSpec.conv2d(shape, 8, 3, padding=1)
    c2 = LayerSpec.conv2d((8, 6, 6), 2, 2, stride=2)
    bundle = random_bundle(rng, spatial=True, input_shape=shape, layers=[c1, c2, LayerSpec(size=3)],
                           max_input_events=3, v_width=8, c_width=8, bias_width=4, time_steps=4)
    if all_spiking:     # every conv1 neuron spikes each step, so conv2's sum is its fan-in, 32
        bundle = dataclasses.replace(
            bundle, layers=[dataclasses.replace(l, reset="zero", current=False, leak_v=0)
                            for l in bundle.layers[:2]] + [bundle.layers[2]],
            weights=[np.ones_like(bundle.weights[0]), np.ones_like(bundle.weights[1]), bundle.weights[2]],
            bias=[np.ones(8, np.int64), np.zeros(2, np.int64), bundle.bias[2]],
            threshold=[np.ones(8, np.int64), np.full(2, 32, np.int64), bundle.threshold[2]])
    return bundle


@pytest.mark.parametrize("all_spiking", [True, False])
def test_split_accumulators_are_exact(all_spiking):
    """``accumulator_split``: the conv2 sums (in the words with high bits) reach their bound,
    32, which 3 low bits would wrap; conv1's (3-bit words, sign-extended) take both signs.
    Spike-exact with stalls, the single-port state and queue of the UP5K build included."""
    rng = np.random.default_rng(8 + all_spiking)
    bundle = _split_bundle(rng, all_spiking)
    core = BSNNCore(bundle, HardwareConfig(lanes=4, accumulator_split=True,
                                           neuron_state_memory="single_port",
                                           spike_queue_memory="single_port"))
    g = core.geom
    assert g.acc_words == (72, 9, 1) and g.syn_w == 7 and g.accumulator_split == (3, 9)
    on, off = random_counts(bundle, 2, rng, density=0.5, polarity=not all_spiking)
    gold = run_golden(bundle, on, off)
    if all_spiking:
        assert gold.spikes[1].all()
    results = CoreRunner(core, rng, p_valid=0.6, p_ready=0.6).run(
        [("infer", events_of(on, off, b, rng)) for b in range(2)])
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)


def test_shipped_geometry_elaborates():
    """The convolutional MNIST network of the task (1x28x28, conv 32 5x5, pool 2, conv 64 5x5,
    pool 2, dense 10) builds: its geometry and Verilog."""
    from amaranth.back import rtlil
    rng = np.random.default_rng(0)
    shape = (1, 28, 28)
    c1 = LayerSpec.conv2d(shape, 32, 5)
    p1 = LayerSpec.pool2d((32, 24, 24), 2)
    c2 = LayerSpec.conv2d((32, 12, 12), 64, 5)
    p2 = LayerSpec.pool2d((64, 8, 8), 2)
    out = LayerSpec(size=10, reset="none")
    bundle = random_bundle(rng, spatial=True, input_shape=shape, layers=[c1, p1, c2, p2, out],
                           v_width=16, c_width=16, bias_width=16)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=8, neuron_state="minimal"))
    assert g.sizes == (784, 18432, 4608, 4096, 1024, 10)
    assert g.weight_depth == 25 * 4 + 32 * 25 * 8 + 1024 * 2
    assert g.acc_depth == 576 * 4 and g.bank_depth == 18432 + 4096 + 10
    assert g.neuron_total == 32 + 64 + 10
    text = rtlil.convert(BSNNCore(bundle, HardwareConfig(lanes=8, neuron_state="minimal")))
    assert "taps" in text
