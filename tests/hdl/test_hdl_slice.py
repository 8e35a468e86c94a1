"""RegisterSlice: order, throughput, and no combinational path between the two handshakes."""
import numpy as np
import pytest

from bsnn.hdl.slice import RegisterSlice

from hdl_testutil import run_sim, stream_exchange


@pytest.mark.parametrize("follow", [False, True])    # the iCE40's skid enable, the ECP5's
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5), (0.9, 0.3), (0.3, 0.9)])
def test_slice_passes_every_item_in_order_under_random_stalls(p_valid, p_ready, follow):
    rng = np.random.default_rng(int(p_valid * 10 + p_ready * 100))
    dut = RegisterSlice(12, skid_follows_input=follow)
    items = [int(x) for x in rng.integers(0, 1 << 12, 300)]
    out = []

    async def bench(ctx):
        out.extend(await stream_exchange(ctx, dut.i, items, dut.o, len(items), rng,
                                         p_valid, p_ready))

    run_sim(dut, bench, deadline_cycles=20_000)
    assert out == items


@pytest.mark.parametrize("follow", [False, True])
def test_slice_sustains_one_item_per_cycle(follow):
    dut = RegisterSlice(8, skid_follows_input=follow)
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        taken = 0
        for cycle in range(60):
            ctx.set(dut.i.payload, taken & 0xFF)
            _, _, ir, ov = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            taken += ir
            cycles.append((ir, ov))

    run_sim(dut, bench)
    assert all(ir for ir, _ in cycles)                  # never stalls its input
    assert [ov for _, ov in cycles][1:] == [1] * 59     # output valid from the 2nd cycle on


@pytest.mark.parametrize("follow", [False, True])
def test_slice_handshakes_are_registered(follow):
    """i.ready does not follow o.ready, and o.valid / o.payload do not follow i, within a cycle."""
    dut = RegisterSlice(8, skid_follows_input=follow)

    async def bench(ctx):
        # Fill both registers: the output is not taken.
        ctx.set(dut.o.ready, 0)
        for value in (5, 6):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, value)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.i.ready) == 0 and ctx.get(dut.o.payload) == 5
        ctx.set(dut.o.ready, 1)                 # taking the output frees nothing this cycle
        assert ctx.get(dut.i.ready) == 0
        await ctx.tick()
        assert ctx.get(dut.i.ready) == 1 and ctx.get(dut.o.payload) == 6
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 7)               # a new input does not reach o before a tick
        assert ctx.get(dut.o.payload) == 6 and ctx.get(dut.o.valid) == 1

    run_sim(dut, bench)
