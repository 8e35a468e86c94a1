"""ReadoutUnit: section 6 rules and tie-breaks, against the golden model's readout()."""
import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.golden import readout
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.layouts import ReadoutRule
from bsnn.hdl.readout import ReadoutUnit

from hdl_testutil import run_sim


@pytest.mark.parametrize("rule", ["spike_count", "potential", "first_spike"])
def test_readout_rules(rule):
    rng = np.random.default_rng(ReadoutRule.NAMES[rule])
    n, vw, T = 6, 5, 4
    bundle = random_bundle(rng, sizes=[3, n], v_width=vw, readout=rule, time_steps=T)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig())
    dut = ReadoutUnit(g)
    # Small value ranges so that ties on every key are frequent.
    cases = []
    for _ in range(40):
        count = rng.integers(0, 3, n)
        first = np.where(count > 0, rng.integers(0, 2, n), -1)
        v = rng.choice([-16, -1, 0, 3, 15], n)
        cases.append((count, first, v))
    cases.append((np.zeros(n, int), np.full(n, -1), np.zeros(n, int)))   # all equal: index 0
    expect = [int(readout(bundle, torch.tensor(c)[None], torch.tensor(f)[None], torch.tensor(v)[None])[0])
              for c, f, v in cases]
    got = []

    async def bench(ctx):
        ctx.set(dut.rule, ReadoutRule.NAMES[rule])
        for count, first, v in cases:
            for j in range(n):
                while rng.random() < 0.3:
                    ctx.set(dut.i_cand.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i_cand.valid, 1)
                ctx.set(dut.i_cand.payload, {"index": j, "v": int(v[j]), "count": int(count[j]),
                                             "first": max(0, int(first[j])), "fired": int(first[j] >= 0),
                                             "last": j == n - 1})
                await ctx.tick().until(dut.i_cand.ready)
            ctx.set(dut.i_cand.valid, 0)
            await ctx.tick().repeat(int(rng.integers(1, 3)))
            ctx.set(dut.o_class.ready, 1)
            while True:
                _, _, valid, payload = await ctx.tick().sample(dut.o_class.valid, dut.o_class.payload)
                if valid:
                    break
            ctx.set(dut.o_class.ready, 0)
            got.append((payload.index, payload.value))

    run_sim(dut, bench, deadline_cycles=20_000)
    assert [i for i, _ in got] == expect
    for (i, value), (count, first, v) in zip(got, cases):
        assert value == v[i]
