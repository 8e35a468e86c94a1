"""NeuronArray: U banks in lockstep update groups of U neurons (section 5, against the plain
model), padding lanes only report, and the dump reports the output layer's stored state."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import layer_mode_word
from bsnn.hdl.neuron_array import NeuronArray, bank_images

from hdl_testutil import RefLayer, run_sim, stream_exchange


SMALL, LARGE = [4, 7, 5], [4, 23, 37]   # no layer a multiple of 2 or 4: padding lanes


@pytest.mark.parametrize("U,pipeline,p,queue,sizes", [
    (1, "short", 1.0, False, SMALL), (2, "short", 0.6, False, SMALL), (4, "long", 0.6, False, SMALL),
    (4, "short", 0.4, False, SMALL),
    # the non-stalling banks behind the result queue: more groups than it holds (8 short, 16
    # long), under stalls that fill it
    (1, "short", 0.4, True, LARGE), (2, "long", 0.3, True, LARGE), (4, "long", 0.6, True, SMALL)])
def test_neuron_array_groups_and_dump(U, pipeline, p, queue, sizes):
    rng = np.random.default_rng(U + 10 * int(10 * p) + 1000 * queue)
    bundle = random_bundle(rng, sizes=sizes, v_width=6, c_width=6, bias_width=3)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4, neuron_lanes=U,
                                                        neuron_pipeline=pipeline,
                                                        result_queue=queue))
    bias, threshold = bank_images(bundle, g)
    dut = NeuronArray(g, bias=bias, threshold=threshold,
                      modes=[layer_mode_word(l) for l in bundle.layers])
    refs = [RefLayer(l, b, t, g.v_width, g.c_width)
            for l, b, t in zip(bundle.layers, bundle.bias, bundle.threshold)]
    imax = (1 << (g.syn_w - 1)) - 1
    T = 4
    plan = [[[int(rng.integers(-imax, imax + 1)) for _ in range(n)] for n in sizes[1:]]
            for _ in range(T)]
    expect = []
    for t in range(T):
        for l, n in enumerate(sizes[1:]):
            for j in range(n):
                spike = refs[l].update(j, plan[t][l][j], t)
                expect.append((t, l, j, spike, refs[l].v[j]))
    out_layer = refs[-1]
    dump_expect = [(j, out_layer.v[j], out_layer.count[j], bool(out_layer.count[j]))
                   for j in range(sizes[-1])]
    got, dumped = [], []

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for t in range(T):
            ctx.set(dut.step, t)
            for l, n in enumerate(sizes[1:]):
                ctx.set(dut.layer, l)
                await ctx.tick().repeat(2)      # the banks register the layer's mode twice
                n_groups = g.groups[l]
                cmds = [{"group": grp, "param": grp, "last": grp == n_groups - 1,
                         "value": [plan[t][l][grp * U + u] if grp * U + u < n else 0
                                   for u in range(U)]} for grp in range(n_groups)]
                out = await stream_exchange(ctx, dut.i_cmd, cmds, dut.o_result, n_groups,
                                            rng, p, p)
                for grp, group in enumerate(out):
                    for u in range(U):
                        r, j = group[u], grp * U + u
                        assert r.index == grp and r.last == (grp == n_groups - 1)
                        if j < n:
                            got.append((t, l, j, bool(r.spike), r.v))
                            assert not r.dump
                        else:
                            assert r.dump and not r.spike      # padding: reported only
        # The dump: the banks take the output layer's dump commands from the array itself.
        ctx.set(dut.layer, len(sizes) - 2)
        await ctx.tick().repeat(2)
        ctx.set(dut.dump_start, 1)
        await ctx.tick()
        ctx.set(dut.dump_start, 0)
        ctx.set(dut.dump, 1)
        groups = await stream_exchange(ctx, dut.i_cmd, [], dut.o_result, g.groups[-1], rng, p, p)
        ctx.set(dut.dump, 0)
        for grp, group in enumerate(groups):
            for u in range(U):
                r, j = group[u], grp * U + u
                assert r.dump and not r.spike and r.index == grp
                assert r.last == (grp == g.groups[-1] - 1)
                if j < sizes[-1]:
                    dumped.append((j, r.v, r.count, bool(r.fired)))
        # Nothing more: the dump ends with the layer's last group.
        ctx.set(dut.o_result.ready, 1)
        for _ in range(g.neuron_latency + 4):
            *_, valid = await ctx.tick().sample(dut.o_result.valid)
            assert not valid

    run_sim(dut, bench, deadline_cycles=20_000)
    assert got == expect
    assert any(spike for *_, spike, _ in expect)
    assert dumped == dump_expect
