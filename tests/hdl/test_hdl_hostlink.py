"""HostLink (hdl/hostlink.py) in the Amaranth simulator: EXPECT reaches the self-test unit, and
BOOT waits while the self-test runs, with random gaps between the host's bytes and random
stalls of the transmitter."""
import numpy as np
import pytest

from bsnn.hdl.config import CoreGeometry
from bsnn.hdl.hostlink import HostLink, Opcode, Reply, expect_frame

from hdl_testutil import run_sim

GEOM = CoreGeometry(sizes=(12, 9, 5), v_width=9, c_width=8, bias_width=5, lanes=4, trace=True,
                    max_input_events=8)


@pytest.mark.parametrize("seed", range(3))
def test_expect_is_passed_on_and_boot_waits_for_the_self_test(seed):
    rng = np.random.default_rng(seed)
    dut = HostLink(GEOM, rx_depth=16)
    words = [int(w) for w in rng.integers(0, 1 << 16, 3)]
    sent = b"".join(expect_frame(w) for w in words) + bytes([Opcode.BOOT])
    expects, tx, log = [], [], {}
    pending_cycles = int(rng.integers(20, 60))

    async def host(ctx):
        for byte in sent:
            while rng.random() < 0.5:
                await ctx.tick()
            ctx.set(dut.i_rx.valid, 1)
            ctx.set(dut.i_rx.payload, byte)
            await ctx.tick().until(dut.i_rx.ready)
            ctx.set(dut.i_rx.valid, 0)

    async def device(ctx):
        # The self-test runs (boot_pending) for a while, then reports status 0x21.
        ctx.set(dut.boot_pending, 1)
        ctx.set(dut.boot_status, 0x21)
        cycle = 0
        while len(tx) < 2:
            if cycle == pending_cycles + 8 * len(sent):
                ctx.set(dut.boot_pending, 0)
                log["released"] = cycle
            ready = rng.random() < 0.6
            ctx.set(dut.o_tx.ready, ready)
            ctx.set(dut.o_expect.ready, rng.random() < 0.7)
            _, _, tv, tp, ev, er, ep = await ctx.tick().sample(
                dut.o_tx.valid, dut.o_tx.payload, dut.o_expect.valid, dut.o_expect.ready,
                dut.o_expect.payload)
            if tv and ready:
                tx.append(tp)
                log.setdefault("first_tx", cycle)
            if ev and er:
                expects.append(ep)
            cycle += 1

    run_sim(dut, host, device, deadline_cycles=20_000)
    assert expects == words                           # each EXPECT once, in order
    assert tx == [Reply.BOOT, 0x21]
    assert log["first_tx"] > log["released"]          # not while the self-test ran
