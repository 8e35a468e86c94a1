# amaranth: UnusedElaboratable=no
# (the refused SinglePortRAM below exists, unelaborated, when its constructor raises)
"""Single-port memories (hdl/single_port.py): the SPRAM queue against Amaranth's
SyncFIFOBuffered cycle for cycle when writes and reads come in separate phases (as the spike
queue's do), and in order with writes and reads interleaved at random."""
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import fifo

from bsnn.hdl.single_port import SinglePortFIFO, SinglePortRAM, spram_blocks

from hdl_testutil import run_sim

WIDTH = 7


@pytest.mark.parametrize("seed", range(3))
def test_queue_cycles_match_sync_fifo_buffered_in_phases(seed):
    """Phases of writes (with gaps), then, from the second cycle after the last write (the
    spike queue's load, then its replay), reads with random ready: valid and payload equal
    SyncFIFOBuffered's in every cycle; the queue fills to its depth."""
    rng = np.random.default_rng(seed)
    depth = 16
    m = Module()
    m.submodules.spq = spq = SinglePortFIFO(WIDTH, depth, spram=False)
    m.submodules.ref = ref = fifo.SyncFIFOBuffered(width=WIDTH, depth=depth + 1)
    mismatches, seen = [], []

    async def bench(ctx):
        for phase in range(12):
            n = depth if phase == 5 else int(rng.integers(0, depth + 1))
            for _ in range(n):
                while rng.random() < 0.3:
                    await ctx.tick()
                word = int(rng.integers(0, 1 << WIDTH))
                for q in (spq, ref):
                    ctx.set(q.w_stream.valid, 1)
                    ctx.set(q.w_stream.payload, word)
                await ctx.tick()
                for q in (spq, ref):
                    ctx.set(q.w_stream.valid, 0)
            await ctx.tick().repeat(1 + int(rng.integers(0, 3)))
            taken = 0
            while taken < n:
                ready = int(rng.random() < 0.7)
                for q in (spq, ref):
                    ctx.set(q.r_stream.ready, ready)
                *_, a_v, a_p, b_v, b_p = await ctx.tick().sample(
                    spq.r_stream.valid, spq.r_stream.payload, ref.r_stream.valid, ref.r_stream.payload)
                if a_v != b_v or (a_v and a_p != b_p):
                    mismatches.append((phase, taken, a_v, a_p, b_v, b_p))
                if b_v and ready:
                    taken += 1
                    seen.append(b_p)
            for q in (spq, ref):
                ctx.set(q.r_stream.ready, 0)
            *_, a_v, b_v = await ctx.tick().sample(spq.r_stream.valid, ref.r_stream.valid)
            assert not a_v and not b_v

    run_sim(m, bench, deadline_cycles=20_000)
    assert not mismatches, mismatches[:5]
    assert len(seen) > 2 * depth


@pytest.mark.parametrize("p_write,p_ready", [(0.5, 0.5), (0.9, 0.3), (0.2, 1.0)])
def test_queue_keeps_order_with_writes_and_reads_interleaved(p_write, p_ready):
    """Writes take the port whenever they come; every entry comes out once, in order."""
    rng = np.random.default_rng(int(p_write * 10 + p_ready * 100))
    dut = SinglePortFIFO(WIDTH, 8, spram=False)
    sent, got, model = [], [], deque()

    async def bench(ctx):
        for _ in range(600):
            write = rng.random() < p_write
            word = int(rng.integers(0, 1 << WIDTH))
            ready = int(rng.random() < p_ready)
            ctx.set(dut.w_stream.valid, int(write))
            ctx.set(dut.w_stream.payload, word)
            ctx.set(dut.r_stream.ready, ready)
            *_, w_ready, valid, payload = await ctx.tick().sample(
                dut.w_stream.ready, dut.r_stream.valid, dut.r_stream.payload)
            if write and w_ready:
                sent.append(word)
            if valid and ready:
                got.append(payload)
        ctx.set(dut.w_stream.valid, 0)
        ctx.set(dut.r_stream.ready, 1)
        for _ in range(40):
            *_, valid, payload = await ctx.tick().sample(dut.r_stream.valid, dut.r_stream.payload)
            if valid:
                got.append(payload)

    run_sim(dut, bench, deadline_cycles=5_000)
    assert got == sent and len(sent) > 50


def test_spram_blocks_and_limits():
    assert spram_blocks(9546, 16) == 1 and spram_blocks(6273, 14) == 1
    assert spram_blocks(16385, 16) == 2 and spram_blocks(100, 17) == 2
    with pytest.raises(ValueError, match="depth"):
        SinglePortRAM(16, 16385, spram=True)
