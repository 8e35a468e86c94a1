"""Formal (bounded) checks of the stream rules and of the spike queue, with SymbiYosys + z3.

Every input of the unit under check is free (AnySeq) except where an Assume states the rule its
producer must keep; the Asserts must then hold on every path up to the depth."""
import os

import numpy as np
import pytest
from amaranth.asserts import AnySeq, Initial
from amaranth.hdl import Assert, Assume, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import fifo

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.core import BSNNCore
from bsnn.sim.formal import FormalUnavailable, prove, tools


def _require():
    try:
        tools()
    except FormalUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _past(m, sig, name):
    """A register holding ``sig`` from the previous cycle (0 in the first)."""
    reg = Signal.like(sig, name=name)
    m.d.sync += reg.eq(sig)
    return reg


class StreamRules(Elaboratable):
    """BSNNCore with free inputs: its outputs must keep the stream rules, it may take config
    writes only while idle, and while idle at most two input events (its input queue)."""

    def __init__(self, bundle):
        self.core = BSNNCore(bundle, HardwareConfig(lanes=2))

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.d.comb += Assume(~ResetSignal() | Initial())     # reset only in the first cycle
        m.d.comb += Assume(ResetSignal() == Initial())
        for port in (core.i_events, core.i_config):
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.eq(AnySeq(len(port.payload.as_value())))]
        m.d.comb += [core.start.eq(AnySeq(1)), core.o_results.ready.eq(AnySeq(1))]
        started = Signal()
        m.d.sync += started.eq(1)
        out = core.o_results
        p_valid = _past(m, out.valid, "p_valid")
        p_ready = _past(m, out.ready, "p_ready")
        p_payload = _past(m, out.payload.as_value(), "p_payload")
        with m.If(started & p_valid & ~p_ready):
            m.d.comb += [Assert(out.valid), Assert(out.payload.as_value() == p_payload)]
        idle_taken = Signal(2)      # events taken since the core last went busy, up to 3
        with m.If(core.busy):
            m.d.sync += idle_taken.eq(0)
        with m.Elif(core.i_events.valid & core.i_events.ready & (idle_taken != 3)):
            m.d.sync += idle_taken.eq(idle_taken + 1)
        m.d.comb += Assert(idle_taken <= 2)
        with m.If(core.i_config.ready):
            m.d.comb += Assert(~core.busy)
        p_done = _past(m, core.done, "p_done")
        p_start = _past(m, core.start, "p_start")
        with m.If(started & p_done & ~p_start):   # a start in the done cycle may begin the next one
            m.d.comb += Assert(~core.busy)
        return m


@pytest.mark.slow
def test_core_keeps_stream_rules(tmp_path):
    _require()
    bundle = random_bundle(np.random.default_rng(1), sizes=[2, 2, 1], time_steps=1, v_width=3,
                           c_width=3, bias_width=2, max_input_events=2)
    dut = StreamRules(bundle)
    ok, log = prove(dut, [], tmp_path, depth=18)
    assert ok, log


class QueueOrder(Elaboratable):
    """The spike queue (SyncFIFOBuffered): a value written at a chosen moment comes out
    after exactly as many reads as there were entries before it, and the level is bounded."""

    def __init__(self, depth=3, width=3):
        self.fifo = fifo.SyncFIFOBuffered(width=width, depth=depth)
        self.depth, self.width = depth, width

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = self.fifo
        m.d.comb += Assume(ResetSignal() == Initial())
        m.d.comb += [q.w_en.eq(AnySeq(1)), q.w_data.eq(AnySeq(self.width)), q.r_en.eq(AnySeq(1))]
        m.d.comb += Assert(q.level <= self.depth)
        # Track one marked write: count reads that must happen before it appears at the head.
        mark = Signal()          # the marked write is in the queue
        ahead = Signal(range(self.depth + 2))
        value = Signal(self.width)
        choose = AnySeq(1)
        w = q.w_en & q.w_rdy
        r = q.r_en & q.r_rdy
        with m.If(~mark & w & choose & ~Initial()):
            m.d.sync += [mark.eq(1), value.eq(q.w_data), ahead.eq(q.level - r)]
        with m.Elif(mark & r):
            with m.If(ahead == 0):
                m.d.comb += Assert(q.r_data == value)
                m.d.sync += mark.eq(0)
            with m.Else():
                m.d.sync += ahead.eq(ahead - 1)
        return m


def test_spike_queue_order_and_level(tmp_path):
    _require()
    # 12 cycles hold the longest case of a 3-entry queue (fill it, write the marked value
    # behind three others, read all four) with margin; each further cycle costs z3 about twice.
    ok, log = prove(QueueOrder(), [], tmp_path, depth=12)
    assert ok, log
