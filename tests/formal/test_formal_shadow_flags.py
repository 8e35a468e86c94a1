"""Formal proofs (k-induction: for every reachable state, not only to a depth) that the flags the
core keeps as registers next to their counters (timing) always equal the conditions they stand
for. Each unit's inputs are free except for the Assumes, which state what the rest of the core
guarantees (the sequencer's contract)."""
import numpy as np
import pytest
from amaranth.asserts import AnySeq, Initial
from amaranth.hdl import Assert, Assume, Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.lib.wiring import In

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.input_filter import InputFilter
from bsnn.hdl.sequencer import Sequencer, SequencerState
from bsnn.hdl.spike_replay import SpikeReplay
from bsnn.sim.formal import prove
from tests.formal.test_formal_streams import _require


def _geometry(sizes, capacity=5, U=1):
    bundle = random_bundle(np.random.default_rng(0), sizes=sizes, max_input_events=capacity)
    return CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2, neuron_lanes=U,
                                                           max_input_events=capacity))


def _free_inputs(m, unit):
    """Drive every input port of ``unit`` (streams included) with a free value."""
    for path, member, value in unit.signature.flatten(unit):
        if member.flow == In:
            bits = Value.cast(value)
            m.d.comb += bits.eq(AnySeq(len(bits)))


def _past(m, value, name):
    reg = Signal.like(value, name=name)
    m.d.sync += reg.eq(value)
    return reg


class SequencerFlags(Elaboratable):
    """``layer_zero == (layer == 0)``, ``hidden == (layer < L - 1)`` and ``layer < L`` in every
    state; ``last_step == (step + 1 >= T)`` from the end of CLEAR on. Assumed: ``T`` changes
    only while the sequencer is idle or clearing (the config port is ready only while idle;
    its last write lands in the first CLEAR cycle)."""
    def __init__(self, geom):
        self.seq = Sequencer(geom)
        self.L = geom.n_layers

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = self.seq
        m.d.comb += Assume(ResetSignal() == Initial())
        _free_inputs(m, seq)
        T, state = seq.time_steps, seq.state
        past_T = _past(m, T, "past_T")
        settled = ~Initial() & (state != SequencerState.IDLE) & (state != SequencerState.CLEAR)
        with m.If(settled):
            m.d.comb += Assume(T == past_T)
        m.d.comb += [Assert(seq.layer_zero == (seq.layer == 0)),
                     Assert(seq.hidden == (seq.layer < self.L - 1)),
                     Assert(seq.layer < self.L)]
        with m.If(settled):
            m.d.comb += Assert(seq.last_step == (seq.step + 1 >= T))
        with m.If(state == SequencerState.CLEAR):
            m.d.comb += Assert(seq.step == 0)      # (what makes the CLEAR state's flag right)
        return m


class FilterBudget(Elaboratable):
    """``in_full == (n_in >= max_events or n_in == capacity)`` once the budget is armed (a
    clearing period has ended since the last start), and ``n_in == 0`` until then. Assumed, as
    the sequencer drives the filter: start, clearing and enable are exclusive; clearing comes
    only after a start, enable only after the clearing; ``max_events`` is stable while armed."""
    def __init__(self, geom):
        self.flt = InputFilter(geom)
        self.capacity = geom.max_input_events

    def elaborate(self, platform):
        m = Module()
        m.submodules.flt = flt = self.flt
        m.d.comb += Assume(ResetSignal() == Initial())
        _free_inputs(m, flt)
        start, clearing, enable = flt.start, flt.clearing, flt.enable
        was_clearing = _past(m, clearing, "was_clearing")
        past_max = _past(m, flt.max_events, "past_max")
        cleared = Signal()
        armed = Signal()
        m.d.comb += armed.eq(cleared | (was_clearing & ~clearing))
        m.d.sync += cleared.eq(armed & ~start)
        m.d.comb += [Assume(~(start & clearing)), Assume(~(enable & (start | clearing))),
                     Assume(~enable | armed), Assume(~clearing | ~armed)]
        with m.If(armed & ~Initial()):
            m.d.comb += Assume(flt.max_events == past_max)
        n_in, in_full = flt.n_in, flt.in_full
        with m.If(armed):
            m.d.comb += Assert(in_full == ((n_in >= flt.max_events) | (n_in == self.capacity)))
        with m.Else():
            m.d.comb += Assert(n_in == 0)
        m.d.comb += Assert(n_in <= self.capacity)
        return m


class ReplayCount(Elaboratable):
    """``no_remaining == (remaining == 0)``, whatever the inputs do."""
    def __init__(self, geom):
        self.replay = SpikeReplay(geom)

    def elaborate(self, platform):
        m = Module()
        m.submodules.replay = replay = self.replay
        m.d.comb += Assume(ResetSignal() == Initial())
        _free_inputs(m, replay)
        m.d.comb += Assert(replay.no_remaining == (replay.remaining == 0))
        return m


@pytest.mark.parametrize("sizes", [[3, 2], [3, 4, 2], [3, 4, 5, 4, 2]])
def test_sequencer_shadow_flags(tmp_path, sizes):
    _require()
    ok, log = prove(SequencerFlags(_geometry(sizes)), [], tmp_path, depth=4, mode="prove")
    assert ok, log


@pytest.mark.parametrize("capacity", [1, 5])
def test_input_filter_budget_flag(tmp_path, capacity):
    _require()
    ok, log = prove(FilterBudget(_geometry([3, 2], capacity)), [], tmp_path, depth=4,
                    mode="prove")
    assert ok, log


@pytest.mark.parametrize("U", [1, 2])
def test_spike_replay_remaining_flag(tmp_path, U):
    _require()
    ok, log = prove(ReplayCount(_geometry([3, 6, 2], U=U)), [], tmp_path, depth=4, mode="prove")
    assert ok, log
