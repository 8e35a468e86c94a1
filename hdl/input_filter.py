"""Input filter: the core's input events, checked and limited per step, as synapse events."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry
from .layouts import ErrorBit, InputEventLayout, SynapseEventLayout
from .slice import RegisterSlice

__all__ = ["InputFilter", "QueuedInputLayout"]


class QueuedInputLayout(data.StructLayout):
    """An input event in the filter's queue, with the result of its index check."""
    def __init__(self, idx_w):
        super().__init__({"event": InputEventLayout(idx_w), "bad_index": 1})


class InputFilter(wiring.Component):
    """Turns the input events of one inference into synapse events for layer 1.

    Events enter a 2-entry queue whenever it has room (also while the core is idle), with
    ``index >= N_0`` checked on the way in (timing: neither the sequencer's state nor the
    compare reaches the producer's handshake). While ``enable`` is high the head of the queue
    is handled: an ``end_of_step`` becomes a flush, an event inside the step's budget a synapse
    event; an event with a bad index, or beyond ``max_input_events`` (or the build's capacity)
    valid events in its step, is consumed without output and flagged in ``error``.

    Ports
    -----
    i_events : In(stream.Signature(InputEventLayout))
        The core's input events; ready whenever the queue has room (from a flip-flop).
    o_events : Out(stream.Signature(SynapseEventLayout))
        Valid only while ``enable``: ``flush = 1`` for an end of step, else an event.
    enable : In(1)
        The sequencer is accumulating layer 1 (held until the flush is taken).
    start : In(1)
        Pulse (the core accepts a start): clear ``error`` and the step's event count.
    clearing : In(1)
        High while the core clears: the budget is re-armed from ``max_events`` (it may have
        been written just before the start).
    max_events : In(cfg_data_w)
        The GLOBAL ``max_input_events`` register; stable from the end of ``clearing`` on.
    error : Out(ErrorBit.WIDTH)
        Sticky since ``start``: bit INDEX, bit OVERFLOW.

    Latency 1 cycle (queue); one event or drop per cycle while ``o_events`` is ready.
    ``in_full`` is kept equal to ``n_in >= max_events or n_in == capacity`` (registered for
    timing; tests/formal/test_formal_shadow_flags.py proves it).
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        super().__init__({
            "i_events": In(stream.Signature(InputEventLayout(geom.idx_w))),
            "o_events": Out(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "enable": In(1),
            "start": In(1),
            "clearing": In(1),
            "max_events": In(geom.cfg_data_w),
            "error": Out(ErrorBit.WIDTH),
        })
        # Valid events taken in the current step, and whether the budget is spent (a register
        # shadowing the comparison: timing).
        self.n_in = Signal(range(geom.max_input_events + 1))
        self.in_full = Signal()

    def elaborate(self, platform):
        g = self._geom
        m = Module()
        n_in, in_full = self.n_in, self.in_full
        # The budget as wide as the count: GLOBAL registers are `cfg_data_w` bits (400 in the
        # parallel core), and a comparison that wide was a 400-bit carry chain, the core's
        # critical path. A budget beyond the count's range saturates: n_in + 1 never reaches
        # it (n_in + 1 <= max_input_events < 2^width - 1), as it never reached the original.
        width = len(n_in) + 1
        max_ev = Signal(width)
        m.d.comb += max_ev.eq(Mux(self.max_events[width:].any(), (1 << width) - 1,
                                  self.max_events[:width]))

        m.submodules.queue = queue = RegisterSlice(QueuedInputLayout(g.idx_w))
        m.d.comb += [queue.i.valid.eq(self.i_events.valid),
                     queue.i.payload.event.eq(self.i_events.payload),
                     queue.i.payload.bad_index.eq(self.i_events.payload.index >= g.sizes[0]),
                     self.i_events.ready.eq(queue.i.ready)]
        head = queue.o
        ev = head.payload.event
        out = self.o_events

        with m.If(self.enable):
            with m.If(ev.end_of_step):
                m.d.comb += [out.valid.eq(head.valid), out.payload.flush.eq(1),
                             head.ready.eq(out.ready)]
                with m.If(head.valid & out.ready):
                    m.d.sync += [n_in.eq(0), in_full.eq(max_ev == 0)]
            with m.Elif(head.payload.bad_index):
                m.d.comb += head.ready.eq(1)
                with m.If(head.valid):
                    m.d.sync += self.error[ErrorBit.INDEX].eq(1)
            with m.Elif(in_full):
                m.d.comb += head.ready.eq(1)
                with m.If(head.valid):
                    m.d.sync += self.error[ErrorBit.OVERFLOW].eq(1)
            with m.Else():
                m.d.comb += [out.valid.eq(head.valid),
                             out.payload.index.eq(ev.index), out.payload.polarity.eq(ev.polarity),
                             head.ready.eq(out.ready)]
                with m.If(head.valid & out.ready):
                    m.d.sync += [n_in.eq(n_in + 1),
                                 in_full.eq((n_in + 1 >= max_ev)
                                            | (n_in + 1 == g.max_input_events))]
        with m.If(self.start):
            m.d.sync += [n_in.eq(0), self.error.eq(0)]
        with m.If(self.clearing):
            m.d.sync += in_full.eq(max_ev == 0)
        return m
