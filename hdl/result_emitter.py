"""Result emitter: the neuron groups' results as result records, spike-queue entries and readout
candidates."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import LAYER_WIDTH, STEP_WIDTH, CoreGeometry
from .lane_select import LaneSelect, one_hot_mux
from .layouts import ClassLayout, NeuronResultLayout, ResultKind, ResultLayout, SpikeGroupLayout
from .neuron_array import GroupResultLayout
from .slice import RegisterSlice

__all__ = ["ResultEmitter", "EmitMode", "QueuedResultsLayout"]


class EmitMode(enum.Enum, shape=3):
    """What the emitter makes of its inputs (set by the sequencer's state).

    One-hot: each mode is one bit, set in one state of the sequencer's (one-hot) state machine,
    and the emitter tests that bit alone (``mode_case``). An encoded mode would put an encoder in
    the sequencer and a decoder in the emitter on the core's longest path (iCE40 timing)."""
    NONE = 0b000        # nothing: no record, no group taken
    SPIKES = 0b001      # a layer update: SPIKE records, spike-queue entries (UPDATE)
    POTENTIALS = 0b010  # the output layer's dump: POTENTIAL records, readout candidates (DUMP)
    CLASS = 0b100       # the readout's decision: the CLASS record (CLASS)


def mode_case(mode: EmitMode) -> str:
    """The ``m.Case`` pattern that matches ``mode`` by its one bit (the other bits: don't care)."""
    return format(mode.value, f"0{EmitMode.as_shape().width}b").replace("0", "-")


class QueuedResultsLayout(data.StructLayout):
    """An entry of the result queue: a group's results and, per lane, what is decided about it
    before the queue (timing: no index arithmetic, lane reduction or layer decode on the
    result handshake)."""
    def __init__(self, idx_w, v_width, U):
        super().__init__({
            "results": GroupResultLayout(idx_w, v_width, U),
            "emit": U,          # the lanes to emit: POTENTIALS, the output layer's neurons that
                                # exist; SPIKES, the spikes when the trace is on
            "is_last": U,       # the lane is the output layer's last neuron (ends the dump)
            "queued": 1,        # a hidden layer's group with a spike (a spike-queue entry)
            # of `emit`: some lane set, at most one lane set (the group handshake's flags
            # while nothing of the group is sent)
            "emit_any": 1, "emit_single": 1,
        })


class ResultEmitter(wiring.Component):
    """Takes the neuron array's result groups through a 2-entry queue and emits, one record per
    cycle, lowest lane first:

    * ``SPIKES``: a SPIKE record for every traced spike of the group (step ``step``, layer
      ``layer + 1``); with its last one (at once if it has none) the group leaves the queue
      and, in a hidden layer with at least one spike, its spike mask becomes a spike-queue
      entry on ``o_groups``. ``layer_done`` pulses when the layer's last group leaves.
    * ``POTENTIALS``: for every neuron of the output layer, a POTENTIAL record and the same
      neuron as a readout candidate, in the same cycle (both must be ready); ``dump_done``
      pulses with the last neuron's.
    * ``CLASS``: the readout's decision as the CLASS record; ``class_done`` pulses when it is
      accepted.

    Ports
    -----
    i_results : In(stream.Signature(GroupResultLayout))
        From the neuron array; ready from the queue's fill level.
    mode : In(EmitMode)
        Decides, as a group enters the queue, which of its lanes are emitted; set before the
        first group of a layer update or dump arrives, held until its last has left.
    trace : In(1)
        Run-time trace enable (GLOBAL); ignored by a build without trace.
    hidden : In(1)
        The layer being updated is a hidden one; changes only while the queue is empty.
    step : In(STEP_WIDTH), layer : In(LAYER_WIDTH)
        For the records' fields (``layer`` 0-based).
    clear : In(1)
        Pulse (start of an inference): forget a group's partly emitted lanes.
    o_results : Out(stream.Signature(ResultLayout))
    o_groups : Out(stream.Signature(SpikeGroupLayout))
        Only with hidden layers. ``ready`` is not looked at: the spike queue never fills.
    o_cand : Out(stream.Signature(NeuronResultLayout))
    i_class : In(stream.Signature(ClassLayout))
        To and from the readout unit.
    layer_done, dump_done, class_done : Out(1)

    Latency 1 cycle (queue); throughput one group per cycle (``U > 1`` with the trace on: one
    cycle per traced spike beyond the first of a group).
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        U = geom.neuron_lanes
        members = {
            "i_results": In(stream.Signature(GroupResultLayout(geom.idx_w, geom.v_width, U))),
            "mode": In(EmitMode),
            "trace": In(1),
            "hidden": In(1),
            "step": In(STEP_WIDTH),
            "layer": In(LAYER_WIDTH),
            "clear": In(1),
            "o_results": Out(stream.Signature(ResultLayout(geom.idx_w, geom.v_width))),
            "o_cand": Out(stream.Signature(NeuronResultLayout(geom.idx_w, geom.v_width))),
            "i_class": In(stream.Signature(ClassLayout(geom.idx_w, geom.v_width))),
            "layer_done": Out(1),
            "dump_done": Out(1),
            "class_done": Out(1),
        }
        if geom.n_layers > 1:
            members["o_groups"] = Out(stream.Signature(SpikeGroupLayout(geom.group_w, U)))
        super().__init__(members)

    def elaborate(self, platform):
        g = self._geom
        U = g.neuron_lanes
        L = g.n_layers
        log_u = U.bit_length() - 1
        m = Module()

        # ---- result queue, with the per-lane decisions precomputed ----
        m.submodules.queue = queue = RegisterSlice(QueuedResultsLayout(g.idx_w, g.v_width, U))
        incoming = self.i_results.payload
        in_spikes = Cat(*[incoming[u].spike for u in range(U)])
        in_j0 = Signal(g.idx_w + log_u + 1)
        m.d.comb += in_j0.eq(incoming[0].index * U)
        entry = queue.i.payload
        m.d.comb += [
            queue.i.valid.eq(self.i_results.valid),
            entry.results.eq(incoming),
            entry.is_last.eq(Cat(*[in_j0 + u == g.layer_sizes[-1] - 1 for u in range(U)])),
            entry.queued.eq((in_spikes != 0) & self.hidden if L > 1 else 0),
            self.i_results.ready.eq(queue.i.ready),
        ]
        # What to emit is decided as the group enters the queue, by the mode then (timing: the
        # sequencer's state is not in front of the lane selection; it is in UPDATE or DUMP
        # before the layer's or the dump's first result can arrive, and leaves only when the
        # last group has left).
        exists = Cat(*[in_j0 + u < g.layer_sizes[-1] for u in range(U)])
        traced = Mux(self.trace, in_spikes, 0) if g.trace else Const(0, U)
        dumping = self.mode.as_value().matches(mode_case(EmitMode.POTENTIALS))
        m.d.comb += entry.emit.eq(Mux(dumping, exists, traced))
        flags = LaneSelect(m, entry.emit, "in_emit")
        m.d.comb += [entry.emit_any.eq(flags.any), entry.emit_single.eq(flags.last)]
        head = queue.o.payload
        results = head.results
        res_valid = queue.o.valid
        grp_ready = Signal()
        m.d.comb += queue.o.ready.eq(grp_ready)
        spike_mask = Signal(U)
        for u in range(U):
            m.d.comb += spike_mask[u].eq(results[u].spike)

        # ---- lane selection: the group's lanes still to be emitted, lowest first ----
        # The lane and its record come from the mask (`LaneSelect`); the group handshake (a
        # lane is left, this one is the last) from flip-flops: the entry's flags while nothing
        # of the group is sent, else `rest_single`, set a cycle ahead (timing: no lane
        # selection in front of the queue's enables and the spike queue's write).
        sent = Signal(U)
        partial = Signal()          # sent != 0
        rest_single = Signal()      # with `partial`: one lane of the group is left
        fresh_any, fresh_single = head.emit_any, head.emit_single
        emit = head.emit
        pick = LaneSelect(m, emit & ~sent, "emit")
        onehot = pick.onehot
        any_rem, last_one = Signal(), Signal()
        if U == 1:
            # One lane is the group's last whenever it is set: nothing to register. (The
            # registered form makes Yosys 0.70's abc9 fail an assertion in ABC_OPS_REINTEGRATE
            # on the ULX3S models/conv_mnist board top, bisected to fd6bd21.)
            m.d.comb += [any_rem.eq(pick.any), last_one.eq(1)]
        else:
            m.d.comb += [any_rem.eq(partial | fresh_any),
                         last_one.eq(Mux(partial, rest_single, fresh_single))]
        rest = LaneSelect(m, emit & ~(sent | onehot), "rest")    # the lanes left after this one
        lane = Signal(NeuronResultLayout(g.idx_w, g.v_width))
        m.d.comb += lane.as_value().eq(one_hot_mux(onehot, [results[u].as_value() for u in range(U)]))
        lane_j = Signal(g.idx_w + log_u + 1)
        m.d.comb += lane_j.eq(Cat(pick.index[:log_u], results[0].index))   # group * U + lane

        def lane_sent():
            m.d.sync += [sent.eq(sent | onehot), partial.eq(1), rest_single.eq(rest.last)]

        def group_done():
            m.d.sync += [sent.eq(0), partial.eq(0)]

        res = self.o_results.payload
        with m.Switch(self.mode.as_value()):
            with m.Case(mode_case(EmitMode.SPIKES)):
                # A group is finished when its last traced spike record is accepted (at once
                # when it has none) together with its spike-queue entry (hidden layers).
                finishing = Signal()
                m.d.comb += [
                    finishing.eq(~any_rem | (last_one & self.o_results.ready)),
                    self.o_results.valid.eq(res_valid & any_rem),
                    res.kind.eq(ResultKind.SPIKE), res.step.eq(self.step),
                    res.layer.eq(self.layer + 1), res.index.eq(lane_j), res.value.eq(lane.v),
                    grp_ready.eq(res_valid & finishing),
                ]
                if L > 1:
                    m.d.comb += [self.o_groups.valid.eq(res_valid & queue.o.payload.queued
                                                        & finishing),
                                 self.o_groups.payload.group.eq(results[0].index[:g.group_w]),
                                 self.o_groups.payload.mask.eq(spike_mask)]
                with m.If(self.o_results.valid & self.o_results.ready & ~last_one):
                    lane_sent()
                with m.If(res_valid & grp_ready):
                    group_done()
                    m.d.comb += self.layer_done.eq(results[0].last)

            with m.Case(mode_case(EmitMode.POTENTIALS)):
                xfer = Signal()
                cand_last = Signal()
                cand = self.o_cand
                m.d.comb += [
                    cand_last.eq((queue.o.payload.is_last & onehot) != 0),
                    # The readout is always ready during the dump; it observes the transfers.
                    self.o_results.valid.eq(res_valid & any_rem & cand.ready),
                    res.kind.eq(ResultKind.POTENTIAL), res.step.eq(self.step), res.layer.eq(L),
                    res.index.eq(lane_j), res.value.eq(lane.v),
                    cand.valid.eq(res_valid & any_rem & self.o_results.ready),
                    cand.payload.eq(lane),
                    cand.payload.index.eq(lane_j),
                    cand.payload.last.eq(cand_last),
                    xfer.eq(res_valid & any_rem & self.o_results.ready & cand.ready),
                    grp_ready.eq(xfer & last_one),
                ]
                with m.If(xfer):
                    with m.If(last_one):
                        group_done()
                    with m.Else():
                        lane_sent()
                    m.d.comb += self.dump_done.eq(cand_last)

            with m.Case(mode_case(EmitMode.CLASS)):
                cls = self.i_class
                m.d.comb += [
                    self.o_results.valid.eq(cls.valid),
                    res.kind.eq(ResultKind.CLASS), res.step.eq(self.step), res.layer.eq(L),
                    res.index.eq(cls.payload.index), res.value.eq(cls.payload.value),
                    cls.ready.eq(self.o_results.ready),
                    self.class_done.eq(cls.valid & self.o_results.ready),
                ]

        with m.If(self.clear):
            group_done()
        return m
