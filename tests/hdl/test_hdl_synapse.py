"""SynapseUnit: exact XNOR-popcount sums per layer, drained in order, accumulators re-zeroed."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import weight_words
from bsnn.hdl.synapse import SynapseUnit
from bsnn.hdl.weights import WeightMemory
from amaranth.hdl import Module
from amaranth.lib import wiring

from hdl_testutil import run_sim


class Harness(wiring.Component):
    """SynapseUnit wired to a WeightMemory holding a bundle's weights."""
    def __init__(self, geom, words):
        self.syn = SynapseUnit(geom)
        self.wmem = WeightMemory(geom, init=words)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.syn = self.syn
        m.submodules.wmem = self.wmem
        wiring.connect(m, self.syn.weights, self.wmem.read)
        return m


@pytest.mark.parametrize("lanes,sizes,U", [(4, [7, 9, 5], 1), (1, [5, 3, 2], 1), (8, [6, 8, 17], 1),
                                           (4, [7, 9, 5], 2), (8, [6, 8, 17], 4), (8, [5, 3, 2], 8),
                                           # one word per layer (flip-flop accumulators, the
                                           # groups shifted out): 8 groups per word, partial
                                           # last groups
                                           (32, [7, 30, 21], 4), (16, [9, 16, 5], 2)])
def test_synapse_sums(lanes, sizes, U):
    rng = np.random.default_rng(lanes + 10 * U)
    bundle = random_bundle(rng, sizes=sizes, max_input_events=3 * sizes[0])
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=lanes, neuron_lanes=U))
    dut = Harness(g, weight_words(bundle, g))
    syn = dut.syn
    # Batches: (layer, events). Layer-1 events have both polarities and repeats, up to the
    # capacity; hidden-layer events are distinct indices with polarity 1. Empty batches too.
    batches = []
    for _ in range(6):
        l = int(rng.integers(0, len(sizes) - 1))
        n_src = sizes[l]
        if l == 0:
            k = int(rng.integers(0, g.max_input_events + 1))
            ev = [(int(rng.integers(0, n_src)), int(rng.integers(0, 2))) for _ in range(k)]
        else:
            ev = [(int(i), 1) for i in np.flatnonzero(rng.random(n_src) < 0.6)]
        batches.append((l, ev))
    batches.append((0, [(0, 1)] * g.max_input_events))           # all XNOR = same sign
    expected = []
    for l, ev in batches:
        w = bundle.weights[l].astype(int) * 2 - 1                  # [-1, +1]
        I = np.zeros(sizes[l + 1], dtype=int)
        for i, p in ev:
            I += w[i] if p else -w[i]
        expected.append(I.tolist())
    got = []

    async def bench(ctx):
        ctx.set(syn.clear, 1)
        await ctx.tick()
        ctx.set(syn.clear, 0)
        await ctx.tick().until(~syn.busy)
        for l, ev in batches:
            ctx.set(syn.layer, l)
            items = [{"index": i, "polarity": p, "flush": 0} for i, p in ev]
            items.append({"index": 0, "polarity": 0, "flush": 1})
            n = sizes[l + 1]
            out = []
            pending = list(items)
            n_groups = -(-n // U)
            while len(out) < n_groups or pending:
                if pending and rng.random() < 0.7:
                    ctx.set(syn.i_event.valid, 1)
                    ctx.set(syn.i_event.payload, pending[0])
                else:
                    ctx.set(syn.i_event.valid, 0)
                ready = rng.random() < 0.6
                ctx.set(syn.o_input.ready, ready)
                _, _, iv, ir, ov, op = await ctx.tick().sample(
                    syn.i_event.valid, syn.i_event.ready, syn.o_input.valid, syn.o_input.payload)
                if iv and ir:
                    pending.pop(0)
                if ov and ready:
                    out.append(op)
            ctx.set(syn.i_event.valid, 0)
            ctx.set(syn.o_input.ready, 0)
            assert [r.group for r in out] == list(range(n_groups))
            assert [bool(r.last) for r in out] == [k == n_groups - 1 for k in range(n_groups)]
            got.append([r.value[j % U] for r in out for j in range(r.group * U, r.group * U + U)
                        if j < n])

    run_sim(dut, bench, deadline_cycles=50_000)
    assert got == expected


def test_synapse_clear_discards_partial_sums():
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, sizes=[4, 6])
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4))
    dut = Harness(g, weight_words(bundle, g))
    syn = dut.syn
    got = []

    async def bench(ctx):
        for _ in range(2):
            ctx.set(syn.clear, 1)
            await ctx.tick()
            ctx.set(syn.clear, 0)
            await ctx.tick().until(~syn.busy)
        ctx.set(syn.layer, 0)
        # Events without a flush, then a clear: the sums must be forgotten.
        for i in range(3):
            ctx.set(syn.i_event.valid, 1)
            ctx.set(syn.i_event.payload, {"index": i, "polarity": 1, "flush": 0})
            await ctx.tick().until(syn.i_event.ready)
        ctx.set(syn.i_event.valid, 0)
        await ctx.tick().repeat(3)
        ctx.set(syn.clear, 1)
        await ctx.tick()
        ctx.set(syn.clear, 0)
        await ctx.tick().until(~syn.busy)
        ctx.set(syn.i_event.valid, 1)
        ctx.set(syn.i_event.payload, {"index": 0, "polarity": 0, "flush": 1})
        await ctx.tick().until(syn.i_event.ready)
        ctx.set(syn.i_event.valid, 0)
        ctx.set(syn.o_input.ready, 1)
        while len(got) < 6:
            _, _, v, p = await ctx.tick().sample(syn.o_input.valid, syn.o_input.payload)
            if v:
                got.append(p.value[0])

    run_sim(dut, bench, deadline_cycles=2000)
    assert got == [0] * 6
