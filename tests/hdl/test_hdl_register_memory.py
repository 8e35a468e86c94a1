# amaranth: UnusedElaboratable=no
# (the refused RegisterMemory below exists, unelaborated, when its constructor raises)
"""RegisterMemory: cycle for cycle the reads of an Amaranth Memory with a transparent read port."""
import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import data
from amaranth.lib.memory import Memory

from bsnn.hdl.layouts import AccumulatorLayout
from bsnn.hdl.register_memory import RegisterMemory

from hdl_testutil import run_sim


class _Pair(Elaboratable):
    """The memory under test beside the reference, both driven by the same port signals."""
    def __init__(self, shape, depth, addr_width):
        self.dut = RegisterMemory(shape, depth, addr_width)
        self.ref = Memory(shape=shape, depth=depth, init=[])
        self.depth = depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.ref = self.ref
        wp = self.ref.write_port()
        self.ref_read = rp = self.ref.read_port(transparent_for=(wp,))
        dut = self.dut
        m.d.comb += [wp.en.eq(dut.write.en), wp.data.eq(dut.write.data), rp.en.eq(dut.read.en)]
        if self.depth > 1:      # (a one-word memory ignores its address; the reference has none)
            m.d.comb += [wp.addr.eq(dut.write.addr), rp.addr.eq(dut.read.addr)]
        return m


@pytest.mark.parametrize("shape,depth,addr_width", [
    (8, 1, 1),                               # one word: the address is ignored
    (AccumulatorLayout(5, 7), 1, 1),         # the synapse unit's use: a word of signed lanes
    (12, 3, 2), (6, 4, 2),
])
@pytest.mark.parametrize("p_write,p_read", [(0.5, 0.5), (0.9, 0.9), (0.2, 0.7)])
def test_register_memory_reads_as_a_transparent_memory(shape, depth, addr_width, p_write, p_read):
    rng = np.random.default_rng(depth * 100 + int(p_write * 10) + int(p_read * 1000))
    pair = _Pair(shape, depth, addr_width)
    width = data.Layout.cast(shape).size if isinstance(shape, data.Layout) else shape
    dut = pair.dut
    mismatches, same_address_writes = [], 0

    def raw(value):
        return value.as_value() if isinstance(value, data.View) else value

    async def bench(ctx):
        nonlocal same_address_writes
        for cycle in range(600):
            w_addr = int(rng.integers(0, depth)) if depth > 1 else int(rng.integers(0, 2))
            r_addr = int(rng.integers(0, depth)) if depth > 1 else int(rng.integers(0, 2))
            w_en, r_en = int(rng.random() < p_write), int(rng.random() < p_read)
            same_address_writes += w_en and r_en and (depth == 1 or w_addr == r_addr)
            ctx.set(dut.write.en, w_en)
            ctx.set(dut.write.addr, w_addr)
            ctx.set(raw(dut.write.data), int(rng.integers(0, 1 << width)))
            ctx.set(dut.read.en, r_en)
            ctx.set(dut.read.addr, r_addr)
            await ctx.tick()
            got, want = ctx.get(raw(dut.read.data)), ctx.get(raw(pair.ref_read.data))
            if got != want:
                mismatches.append((cycle, got, want))

    run_sim(pair, bench, deadline_cycles=2_000)
    assert not mismatches, mismatches[:5]
    assert same_address_writes > 10        # the transparent case was exercised


def test_register_memory_refuses_a_depth_beyond_its_address():
    with pytest.raises(ValueError, match="depth 5 does not fit 2 address bits"):
        RegisterMemory(8, 5, 2)
