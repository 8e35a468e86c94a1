"""Readout unit: the predicted class by the rules and tie-breaks of docs/semantics.md section 6."""
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import COUNT_WIDTH, STEP_WIDTH, CoreGeometry
from .layouts import ClassLayout, NeuronResultLayout, ReadoutRule

__all__ = ["ReadoutUnit"]


class ReadoutUnit(wiring.Component):
    """Streaming arg-best over the output neurons.

    Candidates (the final state of each output neuron) arrive in ascending index; a candidate
    replaces the best so far only if strictly better, so the lowest index wins every full tie.
    Keys: ``spike_count``: larger count, then larger v; ``potential``: larger v;
    ``first_spike``: earlier first spike (never fired ranks after every step), then larger v.
    Rule value 3 behaves as ``spike_count``. The rule is applied as the candidate is registered
    (it forms the candidate's sort key), so it must be stable from the first candidate on.

    Ports
    -----
    i_cand : In(stream.Signature(NeuronResultLayout))
        Registered, then compared (one candidate per cycle); not ready while a decision waits
        in ``o_class`` or the last candidate is on its way;
        ``last`` marks the final candidate. ``index``, ``v``, ``count``, ``first``, ``fired``
        are used.
    o_class : Out(stream.Signature(ClassLayout))
        Valid three cycles after the last candidate is accepted, until taken (one candidate per
        cycle: registered, compared, decided).
    rule : In(2)
        :class:`ReadoutRule`; stable during a readout.
    clear : In(1)
        Pulse: forget candidates and any pending decision.
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        super().__init__({
            "i_cand": In(stream.Signature(NeuronResultLayout(geom.idx_w, geom.v_width))),
            "o_class": Out(stream.Signature(ClassLayout(geom.idx_w, geom.v_width))),
            "rule": In(2),
            "clear": In(1),
        })

    def elaborate(self, platform):
        g = self._geom
        m = Module()
        have = Signal()
        b_index = Signal(g.idx_w)
        b_v = Signal(signed(g.v_width))

        # Each rule is a lexicographic order; the candidate's sort key is formed while it is
        # registered, so that deciding is one unsigned comparison (timing): the rule's primary
        # key (spike count; the first spike step inverted, never fired = 2^16 ranking last;
        # nothing for the potential rule) above the potential with its sign bit flipped.
        key_w = max(COUNT_WIDTH, STEP_WIDTH + 1) + g.v_width
        cand = self.i_cand.payload
        primary = Signal(key_w - g.v_width)
        with m.Switch(self.rule):
            with m.Case(ReadoutRule.POTENTIAL):
                m.d.comb += primary.eq(0)
            with m.Case(ReadoutRule.FIRST_SPIKE):
                m.d.comb += primary.eq(~Mux(cand.fired, cand.first, 1 << STEP_WIDTH)
                                       & ((1 << (STEP_WIDTH + 1)) - 1))
            with m.Default():
                m.d.comb += primary.eq(cand.count)
        cand_key = Signal(key_w)
        m.d.comb += cand_key.eq(Cat(cand.v.as_unsigned() ^ (1 << (g.v_width - 1)), primary))

        # Two stages: `c` registers the candidate and its key; `d` registers it again with its
        # key compared against both keys the best can have by the time it is decided (the
        # candidate ahead of it, if that one is taken in the same cycle, and the best before
        # that). Deciding is then a selection among registered bits (timing: neither the
        # candidate's path nor a carry chain is in front of the best's enables).
        layout = NeuronResultLayout(g.idx_w, g.v_width)
        c_valid, d_valid = Signal(), Signal()
        c, d = Signal(layout), Signal(layout)
        c_key, d_key, b_key = Signal(key_w), Signal(key_w), Signal(key_w)
        take = Signal()
        gt_prev = Signal()      # d's key > the key of the candidate ahead of it
        gt_best = Signal()      # d's key > the best before that candidate was decided
        took_prev = Signal()    # ... and that candidate was taken
        # Ready unless the last candidate is on its way or its decision waits in o_class,
        # as a register (timing).
        cand_ok = Signal(init=1)
        m.d.comb += self.i_cand.ready.eq(cand_ok)
        with m.If(self.i_cand.valid & self.i_cand.ready & cand.last):
            m.d.sync += cand_ok.eq(0)
        m.d.sync += [c_valid.eq(self.i_cand.valid & self.i_cand.ready), d_valid.eq(c_valid)]
        with m.If(self.i_cand.valid & self.i_cand.ready):
            m.d.sync += [c.eq(cand), c_key.eq(cand_key)]
        with m.If(c_valid):
            m.d.sync += [d.eq(c), d_key.eq(c_key), gt_prev.eq(c_key > d_key),
                         gt_best.eq(c_key > b_key), took_prev.eq(d_valid & take)]
        m.d.comb += take.eq(~have | Mux(took_prev, gt_prev, gt_best))

        with m.If(d_valid):
            with m.If(take):
                m.d.sync += [b_index.eq(d.index), b_v.eq(d.v), b_key.eq(d_key)]
            with m.If(d.last):
                m.d.sync += [have.eq(0), self.o_class.valid.eq(1),
                             self.o_class.payload.index.eq(Mux(take, d.index, b_index)),
                             self.o_class.payload.value.eq(Mux(take, d.v, b_v))]
            with m.Else():
                m.d.sync += have.eq(1)
        with m.If(self.o_class.valid & self.o_class.ready):
            m.d.sync += [self.o_class.valid.eq(0), cand_ok.eq(1)]
        with m.If(self.clear):
            m.d.sync += [have.eq(0), self.o_class.valid.eq(0), c_valid.eq(0), d_valid.eq(0),
                         cand_ok.eq(1)]
        return m
