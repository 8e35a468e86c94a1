"""Sequencer: the state machine that walks an inference through its steps and layers."""
from amaranth.hdl import Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CYCLES_WIDTH, LAYER_WIDTH, STEP_WIDTH, CoreGeometry
from .layouts import SynapseEventLayout
from .result_emitter import EmitMode

__all__ = ["Sequencer", "SequencerState"]


class SequencerState(enum.Enum, shape=3):
    """States of the :class:`Sequencer` (docs/architecture.md, "Sequencer")."""
    IDLE = 0        # waiting for a start; config writes accepted
    CLEAR = 1       # the units clear their state
    ACCUM = 2       # events into layer `layer`: input events (layer 0) or replayed spikes
    UPDATE = 3      # the layer's neurons are updated; SPIKE records, spike-queue entries
    NEXT = 4        # one cycle: decide the next layer, the next step or the dump
    DUMP = 5        # the output layer's state: POTENTIAL records, readout candidates
    CLASS = 6       # the CLASS record


class Sequencer(wiring.Component):
    """Steps ``t = 0 .. T-1``, and in each the layers ``0 .. L-1``: accumulate the layer's
    events, update its neurons, then (after the last step) dump the output layer and emit the
    class. It holds the step and layer counters and tells the units what to do; every
    decision is taken from registers (timing).

    Ports
    -----
    start : In(1)
        Pulse while idle: run one inference (ignored while busy).
    time_steps : In(STEP_WIDTH)
        ``T`` (GLOBAL); read in CLEAR and NEXT.
    units_busy : In(1)
        The synapse unit is still clearing.
    i_input : In(stream.Signature(SynapseEventLayout))
        The input filter's events and flushes (layer 0).
    i_spikes : In(stream.Signature(SynapseEventLayout))
        The spike replay's events and flush (layers > 0; only with hidden layers).
    o_events : Out(stream.Signature(SynapseEventLayout))
        To the synapse unit: ``i_input`` or ``i_spikes`` while accumulating; the flush that is
        taken ends the accumulation.
    layer_done, dump_done, class_done : In(1)
        From the result emitter: the layer update, the dump, the CLASS record are finished.
    idle, busy : Out(1)
    done : Out(1)
        One-cycle pulse, the cycle after the CLASS record is accepted.
    cycles : Out(CYCLES_WIDTH)
        Cycles since the start (counting while busy).
    clear : Out(1)
        The units' clear pulse, registered one cycle after the start (timing: the start does
        not fan out through the idle decode into every unit).
    accepted : Out(1)
        The start is taken (combinational, in IDLE).
    clearing : Out(1)
        In CLEAR.
    input_enable, replay_enable : Out(1)
        Accumulating layer 0 / a later layer.
    layer_end : Out(1)
        In NEXT: the updated layer's spike groups become the next layer's events.
    dump_start : Out(1), dumping : Out(1)
        NEXT before DUMP / in DUMP.
    emit_mode : Out(EmitMode)
    step : Out(STEP_WIDTH), layer : Out(LAYER_WIDTH)
        The step and the layer (0-based) being processed.
    hidden : Out(1)
        ``layer`` is a hidden layer (changes only in NEXT).

    The flags ``layer_zero`` and ``hidden`` are registers kept equal to ``layer == 0`` and
    ``layer < L - 1``, ``last_step`` (from CLEAR on) to ``step + 1 >= T`` (timing: no compare
    on the control paths); tests/formal/test_formal_shadow_flags.py proves it.
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        members = {
            "start": In(1),
            "time_steps": In(STEP_WIDTH),
            "units_busy": In(1),
            "i_input": In(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "o_events": Out(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "layer_done": In(1),
            "dump_done": In(1),
            "class_done": In(1),
            "idle": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLES_WIDTH),
            "clear": Out(1),
            "accepted": Out(1),
            "clearing": Out(1),
            "input_enable": Out(1),
            "replay_enable": Out(1),
            "layer_end": Out(1),
            "dump_start": Out(1),
            "dumping": Out(1),
            "emit_mode": Out(EmitMode),
            "step": Out(STEP_WIDTH),
            "layer": Out(LAYER_WIDTH),
            # (starts consistent with layer 0, as layer_zero does: the flags then always
            # equal what they shadow)
            "hidden": Out(1, init=int(geom.n_layers > 1)),
        }
        if geom.n_layers > 1:
            members["i_spikes"] = In(stream.Signature(SynapseEventLayout(geom.idx_w)))
        super().__init__(members)
        # The state and the counters with their shadow flags (attributes for the formal checks).
        # The state register keeps the name of Amaranth's FSM register: the board flow recodes
        # registers of that name one-hot (hdl/bitstream.py, ONE_HOT_FSMS).
        self.state = Signal(SequencerState, name="fsm_state")
        self.layer_zero = Signal(init=1)    # layer == 0
        self.last_step = Signal()           # step + 1 >= T (from CLEAR on: T may change while idle)

    def elaborate(self, platform):
        L = self._geom.n_layers
        m = Module()
        # The step, the layer and the hidden flag are registers (the ports themselves).
        state, t, layer, is_hidden = self.state, self.step, self.layer, self.hidden
        layer_zero, last_step = self.layer_zero, self.last_step
        T = self.time_steps
        cycles, done, unit_clear = self.cycles, self.done, self.clear
        m.d.comb += self.busy.eq(~self.idle)
        m.d.sync += [done.eq(0), unit_clear.eq(0)]
        events = self.o_events

        with m.Switch(state):
            with m.Case(SequencerState.IDLE):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    m.d.comb += self.accepted.eq(1)
                    m.d.sync += [unit_clear.eq(1), t.eq(0), layer.eq(0), layer_zero.eq(1),
                                 is_hidden.eq(L > 1), cycles.eq(0)]
                    m.d.sync += state.eq(SequencerState.CLEAR)

            with m.Case(SequencerState.CLEAR):
                # The units clear from the first cycle here (unit_clear): the synapse unit its
                # accumulators; the neuron banks drop what is in flight (their memories need no
                # clear: step 0 reads the old state as zeros).
                m.d.comb += self.clearing.eq(1)
                m.d.sync += last_step.eq(T <= 1)
                with m.If(~self.units_busy & ~unit_clear):
                    m.d.sync += state.eq(SequencerState.ACCUM)

            with m.Case(SequencerState.ACCUM):
                # Events into layer `layer`: input events, or the previous layer's spikes.
                with m.If(layer_zero):
                    m.d.comb += [self.input_enable.eq(1), events.valid.eq(self.i_input.valid),
                                 events.payload.eq(self.i_input.payload),
                                 self.i_input.ready.eq(events.ready)]
                if L > 1:
                    with m.Else():
                        m.d.comb += [self.replay_enable.eq(1),
                                     events.valid.eq(self.i_spikes.valid),
                                     events.payload.eq(self.i_spikes.payload),
                                     self.i_spikes.ready.eq(events.ready)]
                with m.If(events.valid & events.ready & events.payload.flush):
                    m.d.sync += state.eq(SequencerState.UPDATE)

            with m.Case(SequencerState.UPDATE):
                m.d.comb += self.emit_mode.eq(EmitMode.SPIKES)
                with m.If(self.layer_done):
                    m.d.sync += state.eq(SequencerState.NEXT)

            with m.Case(SequencerState.NEXT):
                # The layer is done. Deciding what follows here, from registers only, keeps the
                # step / layer counters off the result handshake's path (timing); for a hidden
                # layer the cycle also lets the spike queue's output register catch up with its
                # last write, so that the cycle count does not depend on which neurons spiked.
                # The spike groups the layer queued are what the next layer reads.
                m.d.comb += self.layer_end.eq(1)
                with m.If(is_hidden):
                    m.d.sync += [layer.eq(layer + 1), layer_zero.eq(0),
                                 is_hidden.eq(layer + 1 != L - 1)]
                    m.d.sync += state.eq(SequencerState.ACCUM)
                with m.Elif(last_step):
                    m.d.comb += self.dump_start.eq(1)
                    m.d.sync += state.eq(SequencerState.DUMP)
                with m.Else():
                    m.d.sync += [t.eq(t + 1), last_step.eq(t + 2 >= T), layer.eq(0),
                                 layer_zero.eq(1), is_hidden.eq(L > 1)]
                    m.d.sync += state.eq(SequencerState.ACCUM)

            with m.Case(SequencerState.DUMP):
                m.d.comb += [self.dumping.eq(1), self.emit_mode.eq(EmitMode.POTENTIALS)]
                with m.If(self.dump_done):
                    m.d.sync += state.eq(SequencerState.CLASS)

            with m.Case(SequencerState.CLASS):
                m.d.comb += self.emit_mode.eq(EmitMode.CLASS)
                with m.If(self.class_done):
                    m.d.sync += [done.eq(1), state.eq(SequencerState.IDLE)]

        with m.If(~self.idle):
            m.d.sync += cycles.eq(cycles + 1)
        return m
