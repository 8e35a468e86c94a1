"""NeuronUnit: section 5 of docs/semantics.md, neuron by neuron, against a plain Python model."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.images import bias_image, layer_mode_word, threshold_image
from bsnn.hdl.layouts import ConfigTarget
from bsnn.hdl.neuron import NeuronUnit

from hdl_testutil import RefLayer, run_sim, stream_exchange, stream_put


MODES = [
    LayerSpec(size=1, current=False, leak_v=2, reset="subtract"),
    LayerSpec(size=1, current=True, leak_v=1, leak_c=3, reset="zero", fire_once=False),
    LayerSpec(size=1, current=True, leak_v=0, leak_c=0, reset="none", fire_once=True),
    LayerSpec(size=1, current=False, leak_v=0, reset="none", fire_once=False),
    # Leak shifts of 8 and more, up to the largest allowed (the shifter clamps at width - 1).
    LayerSpec(size=1, current=True, leak_v=9, leak_c=13, reset="subtract", fire_once=False),
    LayerSpec(size=1, current=False, leak_v=15, reset="zero", fire_once=False),
]
WIDTHS = [(6, 5), (8, 12), (5, 6), (10, 4), (16, 16), (16, 10)]


@pytest.mark.parametrize("case,pipeline,state", [(c, "short", "bram") for c in range(len(MODES))]
                         + [(c, "long", "bram") for c in (1, 4, 5)]
                         # the state on one port (SPRAM): a command every second cycle
                         + [(c, "short", "single_port") for c in (0, 1, 4)]
                         + [(c, "long", "single_port") for c in (2, 5)])
def test_neuron_unit_matches_reference(case, pipeline, state):
    rng = np.random.default_rng(100 + case)
    sizes = [5, 6, 4]
    vw, cw = WIDTHS[case]
    layers = [LayerSpec(**{**MODES[case].__dict__, "size": sizes[1]}),
              LayerSpec(**{**MODES[(case + 1) % 4].__dict__, "size": sizes[2]})]
    bundle = random_bundle(rng, sizes=sizes, v_width=vw, c_width=cw, bias_width=min(vw, 4),
                           layers=layers)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4, neuron_pipeline=pipeline,
                                                        neuron_state_memory=state))
    dut = NeuronUnit(g, bias=bias_image(bundle), threshold=threshold_image(bundle),
                     modes=[layer_mode_word(l) for l in bundle.layers])
    refs = [RefLayer(l, b, t, vw, cw) for l, b, t in zip(bundle.layers, bundle.bias, bundle.threshold)]
    T = 6
    imax = (1 << (g.syn_w - 1)) - 1
    # Extreme inputs too, to reach saturation in both directions.
    plan = [[[int(rng.choice([rng.integers(-imax, imax + 1), imax, -imax, 0]))
              for _ in range(n)] for n in sizes[1:]] for _ in range(T)]
    expect, got = [], []
    for t in range(T):
        for l, n in enumerate(sizes[1:]):
            for j in range(n):
                spike = refs[l].update(j, plan[t][l][j], t)
                expect.append((t, l, j, spike, refs[l].v[j], refs[l].count[j] if l == 1 else 0,
                               refs[l].first[j] if (l == 1 and refs[l].count[j]) else None))
    # Final dump of the output layer.
    dump_expect = [(j, refs[1].v[j], refs[1].count[j], refs[1].fired[j]) for j in range(sizes[2])]

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()
        for t in range(T):
            ctx.set(dut.step, t)
            for l, n in enumerate(sizes[1:]):
                ctx.set(dut.layer, l)
                await ctx.tick().repeat(2)      # the layer's mode is decoded in two registers
                cmds = [{"index": j, "param": j, "value": plan[t][l][j], "last": j == n - 1, "dump": 0}
                        for j in range(n)]
                out = []
                await run_both(ctx, cmds, out)
                for j, r in enumerate(out):
                    first = r.first if (l == 1 and r.count) else None
                    got.append((t, l, r.index, bool(r.spike), r.v, r.count if l == 1 else 0, first))
                    assert r.last == (j == n - 1)
        ctx.set(dut.layer, 1)
        await ctx.tick().repeat(2)
        cmds = [{"index": j, "param": j, "value": 0, "last": j == sizes[2] - 1, "dump": 1} for j in range(sizes[2])]
        out = []
        await run_both(ctx, cmds, out)
        assert [(r.index, r.v, r.count, bool(r.fired)) for r in out] == dump_expect
        assert all(r.dump and not r.spike for r in out)

    async def run_both(ctx, cmds, out):
        out += await stream_exchange(ctx, dut.i_cmd, cmds, dut.o_result, len(cmds), rng, 0.7, 0.7)

    run_sim(dut, bench, deadline_cycles=20_000)
    assert got == expect


def test_neuron_config_writes_and_clear():
    rng = np.random.default_rng(7)
    bundle = random_bundle(rng, sizes=[4, 3], v_width=8, c_width=8, bias_width=6,
                           layers=[LayerSpec(size=3, reset="none")])
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2))
    dut = NeuronUnit(g, bias=[0, 0, 0], threshold=[100, 100, 100], modes=[0])
    # New parameters through the config port: bias -3, 5, 31 (two's complement), theta 1, 2, 127.
    writes = [(ConfigTarget.BIAS, 0, 0x3D), (ConfigTarget.BIAS, 1, 5), (ConfigTarget.BIAS, 2, 31),
              (ConfigTarget.BIAS, 3, 1),             # out of range: ignored
              (ConfigTarget.THRESHOLD, 0, 1), (ConfigTarget.THRESHOLD, 1, 2),
              (ConfigTarget.THRESHOLD, 2, 127),
              (ConfigTarget.WEIGHTS, 0, 0xFF),       # not this unit's target: ignored
              (ConfigTarget.LAYER_MODE, 0, layer_mode_word(LayerSpec(size=3, reset="zero")))]
    results = []

    async def bench(ctx):
        await stream_put(ctx, dut.i_write, [{"target": t, "address": a, "data": d}
                                            for t, a, d in writes])
        for rnd in range(2):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await ctx.tick()
            for t in range(2):
                ctx.set(dut.step, t)
                cmds = [{"index": j, "param": j, "value": 1, "last": j == 2, "dump": 0} for j in range(3)]
                out = await stream_exchange(ctx, dut.i_cmd, cmds, dut.o_result, 3)
                results.append([(r.spike, r.v) for r in out])

    run_sim(dut, bench, deadline_cycles=2000)
    # Step 0: v = 1 + b -> -2, 6, 32; spikes where v >= theta, reset zero.
    # Step 1: -2 + 1 - 3 = -4; 0 + 1 + 5 = 6 -> spike -> 0; 32 + 1 + 31 = 64 < 127.
    assert results[0] == [(0, -2), (1, 0), (0, 32)]
    assert results[1] == [(0, -4), (1, 0), (0, 64)]
    assert results[2:] == results[:2]      # clear restarts from zero state
