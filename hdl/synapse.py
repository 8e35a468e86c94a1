"""XNOR-popcount synapse lanes: per-neuron synaptic input sums of one layer and one time step."""
import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import LAYER_WIDTH, CoreGeometry, span
from .layouts import AccumulatorLayout, SynapseEventLayout, SynapticInputLayout
from .register_memory import RegisterMemory
from .split_memory import SplitAccumulatorMemory
from .slice import RegisterSlice
from .taps import OpLayout, OpMode, TapGenerator
from .weights import ReadPortSignature

__all__ = ["SynapseUnit", "AddressedEventLayout"]


class AddressedEventLayout(data.StructLayout):
    """An event in the synapse unit's address queues: ``row`` is the weight-word address of
    its first chunk (``index * chunks``, then ``+ weight_base``, as it is computed)."""
    def __init__(self, addr_w):
        super().__init__({"flush": 1, "polarity": 1, "row": unsigned(addr_w)})


class SynapseUnit(wiring.Component):
    """``P`` XNOR lanes with a memory of signed accumulators.

    For every event ``(index, polarity)`` into layer ``layer`` the unit performs accumulator
    operations (:class:`~bsnn.hdl.taps.OpLayout`): in a dense layer one, that reads the
    ``chunks[layer]`` weight words of source ``index`` and adds, in lane ``m`` of chunk ``k``,
    ``XNOR(polarity, w[index][k*P+m]) ? +1 : -1`` to the accumulator of neuron ``k*P+m``. In a
    convolutional build the :class:`~bsnn.hdl.taps.TapGenerator` makes one operation per tap of
    a conv2d layer (its chunks: the output channels at one output position) and one single-word
    operation per window of a pool2d layer (+1 in the channel's lane).
    A ``flush`` event ends the layer's events: the unit then streams out, in ascending groups of
    ``U = neuron_lanes`` neurons (one group per cycle; flat order, channel by channel over the
    positions of a spatial layer), the exact synaptic input ``I[j]`` of every neuron of the
    layer, zeroing the accumulators as it goes.

    The accumulators are one memory of ``acc_depth`` words of ``P`` lanes of ``syn_w`` bits
    (word ``position * chunks + chunk``); ``syn_w`` holds the most events a layer can receive
    in a step, so nothing ever saturates. A one-word memory (every layer fits one word) is
    flip-flops (:class:`~bsnn.hdl.register_memory.RegisterMemory`), with the same ports and
    cycles.

    Ports
    -----
    i_event : In(stream.Signature(SynapseEventLayout))
        Into a 2-entry queue (ready depends only on its fill level), then two more that carry
        the event's first weight-word address as it is computed (3 cycles in all; a
        convolutional build's tap generator adds ``tap_latency``); one operation per
        ``chunks[layer]`` cycles (a single-word one in one), a flush in one cycle; events wait
        there while the unit drains or clears.
    o_input : Out(stream.Signature(SynapticInputLayout))
        ``ceil(N[layer] / U)`` group records after each flush, ``last`` on the final one. The first record is
        valid 2 cycles after the flush is accepted; then one per cycle while ready is high.
    weights : Out(ReadPortSignature)
        To the weight memory (latency 3: its output register is this unit's stage-3 weight word).
    layer : In(LAYER_WIDTH)
        Layer being processed (0-based); set at least one cycle before the layer's first event
        and stable until its last record.
    clear : In(1)
        Pulse: abandon everything and zero all accumulators (``acc_depth`` cycles).
    busy : Out(1)
        High while clearing (the last zeroing write lands one cycle after it falls, before any
        event can reach the accumulators).
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        super().__init__({
            "i_event": In(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "o_input": Out(stream.Signature(SynapticInputLayout(geom.group_w, geom.syn_w,
                                                                geom.neuron_lanes))),
            "weights": Out(ReadPortSignature(geom.weight_addr_w, geom.lanes)),
            "layer": In(LAYER_WIDTH),
            "clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        g = self._geom
        P, C = g.lanes, g.acc_depth
        m = Module()

        acc_layout = AccumulatorLayout(g.syn_w, P)
        if g.acc_in_flip_flops:
            # One word (every layer in one word of P lanes, as in the parallel core): flip-flops,
            # not a thousand LUT-RAM cells behind an address comparison (timing).
            m.submodules.acc = acc = RegisterMemory(acc_layout, 1, g.acc_addr_w)
            wp, rp = acc.write, acc.read
        elif g.accumulator_split[1]:
            # Low bits in every word, high bits only where a layer's fan-in needs them.
            m.submodules.acc = acc = SplitAccumulatorMemory(g.syn_w, P, len(span(C)),
                                                            *g.accumulator_split)
            wp, rp = acc.write, acc.read
        else:
            m.submodules.acc = acc = Memory(shape=acc_layout, depth=len(span(C)), init=[])
            wp = acc.write_port()
            rp = acc.read_port(transparent_for=(wp,))

        # Per-layer constants selected by `layer`, registered (timing: no layer decode on the
        # control paths; an event reaches the accumulate FSM three cycles after it enters).
        U = g.neuron_lanes
        Q = P // U                                  # groups per accumulator word
        chunks = Signal(range(g.max_chunks + 1))
        multi_chunk = Signal()
        n_groups = Signal(range(max(g.groups) + 1))
        n_pos = Signal(range(max(g.positions) + 1))
        n_pgroups = Signal(range(max(max(g.groups), max(g.chunks) * Q) + 1))
        with m.Switch(self.layer):
            for l in range(g.n_layers):
                with m.Case(l):
                    m.d.sync += [chunks.eq(g.chunks[l]), multi_chunk.eq(g.chunks[l] > 1),
                                 n_groups.eq(g.groups[l]), n_pos.eq(g.positions[l]),
                                 # bias / threshold words: the groups of a dense layer,
                                 # the channels of a spatial one (U = 1)
                                 n_pgroups.eq(g.groups[l] // g.positions[l])]

        # ---- input queue: the event and its first weight-word address (timing) ----
        # The first 2-entry queue takes the event as it comes (`ready` from its fill level
        # alone, so no ready signal crosses from the accumulate FSM to the sequencer); the last
        # holds the operation for the accumulate FSM (timing). `clear` empties them.
        in_layout = SynapseEventLayout(g.idx_w)
        inq = RegisterSlice(in_layout)
        m.submodules.inq = ResetInserter(self.clear)(inq)
        op_layout = OpLayout(g)
        evq = RegisterSlice(op_layout)
        m.submodules.evq = ResetInserter(self.clear)(evq)
        # (taken while clearing too: they wait in the queues until the clear is done)
        wiring.connect(m, wiring.flipped(self.i_event), inq.i)
        if g.is_spatial:
            # A convolutional build: the tap generator between the queues.
            taps = TapGenerator(g)
            m.submodules.taps = ResetInserter(self.clear)(taps)
            m.d.comb += taps.layer.eq(self.layer)
            wiring.connect(m, inq.o, taps.i_event)
            wiring.connect(m, taps.o_op, evq.i)
        else:
            queued = inq.o.payload

            def into_evq(source, payload, row):
                """``source`` (a queue's output, ``payload`` its event) into the operation
                queue, with the weight row ``row + weight_base[layer]``."""
                row_in = Signal(g.weight_addr_w)
                with m.Switch(self.layer):
                    for l in range(g.n_layers):
                        with m.Case(l):
                            m.d.comb += row_in.eq(g.weight_base[l] + row)
                m.d.comb += [
                    evq.i.valid.eq(source.valid),
                    evq.i.payload.flush.eq(payload.flush),
                    evq.i.payload.polarity.eq(payload.polarity),
                    evq.i.payload.row.eq(row_in),
                    source.ready.eq(evq.i.ready),
                ]

            if g.address_queues == 2:
                # A dense build whose every layer is one weight word: the row is index + base,
                # between the two queues.
                into_evq(inq.o, queued, queued.index)
            else:
                # A dense build: index * chunks, then + base, each between two queues (a
                # constant multiplier can map to a slow DSP block).
                ev_layout = AddressedEventLayout(g.weight_addr_w)
                product = Signal(g.weight_addr_w)
                with m.Switch(self.layer):
                    for l in range(g.n_layers):
                        with m.Case(l):
                            m.d.comb += product.eq(queued.index * g.chunks[l])
                midq = RegisterSlice(ev_layout)
                m.submodules.midq = ResetInserter(self.clear)(midq)
                m.d.comb += [
                    midq.i.valid.eq(inq.o.valid),
                    midq.i.payload.flush.eq(queued.flush),
                    midq.i.payload.polarity.eq(queued.polarity),
                    midq.i.payload.row.eq(product),
                    inq.o.ready.eq(midq.i.ready),
                ]
                into_evq(midq.o, midq.o.payload, midq.o.payload.row)
        ev = evq.o.payload
        ev_valid = evq.o.valid
        ev_take = Signal()
        m.d.comb += evq.o.ready.eq(ev_take)

        # ---- accumulate pipeline: stage 0 issues the reads, stage 3 writes the sums back ----
        k = Signal(span(g.max_chunks))              # chunk of the operation being issued
        # k == 0 and k == chunks - 1, kept as registers next to k (timing: no compare between
        # the counter and the event handshake / the drain's start).
        k_zero = Signal(init=1)
        k_last = Signal()
        aw = g.acc_addr_w
        cur_row = Signal(g.weight_addr_w)              # weight word of the next chunk
        cur_acc = Signal(aw)                           # its accumulator word
        cur_pol = Signal()
        iss = Signal()
        iss_row = Signal(g.weight_addr_w)
        iss_acc = Signal(aw)
        iss_pol = Signal()
        iss_mode = Signal(2)
        iss_lane = Signal(range(max(2, P)))

        # The weight address is the queued operation's row for its first chunk, then a
        # register counting up (timing: no adder between the control and the memory address).
        m.d.comb += [self.weights.addr.eq(iss_row), self.weights.en.eq(1)]

        # The weight word arrives three cycles after its read is issued (the weight memory
        # registers it twice: at its banks and after their multiplexer). The accumulator word
        # is read one cycle after the issue (stage 1), its word registered (stage 2), and the
        # sum is added and written back in stage 3 (timing: every memory output ends at flip-flops).
        # The accumulator read of an operation shows every write up to its own cycle
        # (transparent port), so only the write of the cycle before its stage 3 can be
        # missing: it is forwarded from `last_sum` (the decision is registered a stage ahead).
        def stage_regs(n):
            return (Signal(name=f"s{n}_valid"), Signal(name=f"s{n}_pol"), Signal(aw, name=f"s{n}_acc"),
                    Signal(2, name=f"s{n}_mode"), Signal(range(max(2, P)), name=f"s{n}_lane"))
        s1_valid, s1_pol, s1_acc, s1_mode, s1_lane = stage_regs(1)
        s2_valid, s2_pol, s2_acc, s2_mode, s2_lane = stage_regs(2)
        s3_valid, s3_pol, s3_acc, s3_mode, s3_lane = stage_regs(3)
        s3_base = Signal(acc_layout)
        s3_w = Signal(P)        # the weight memory's own output register (latency 3)
        m.d.comb += s3_w.eq(self.weights.data)
        forward = Signal()      # the word of the operation ahead was written last cycle
        last_sum = Signal(acc_layout)
        m.d.sync += [s1_valid.eq(iss), s1_pol.eq(iss_pol), s1_acc.eq(iss_acc),
                     s1_mode.eq(iss_mode), s1_lane.eq(iss_lane),
                     s2_valid.eq(s1_valid), s2_pol.eq(s1_pol), s2_acc.eq(s1_acc),
                     s2_mode.eq(s1_mode), s2_lane.eq(s1_lane),
                     s3_valid.eq(s2_valid), s3_pol.eq(s2_pol), s3_acc.eq(s2_acc),
                     s3_mode.eq(s2_mode), s3_lane.eq(s2_lane),
                     s3_base.eq(rp.data),
                     forward.eq(s3_valid & (s3_acc == s2_acc)), last_sum.eq(wp.data)]
        base = Signal(acc_layout)
        m.d.comb += base.eq(Mux(forward, last_sum, s3_base))
        # Zeroing writes (drained words, clear) are decided one cycle ahead and held in
        # registers, so that the write port is driven by flip-flops alone (timing: the drain's
        # handshake does not reach the memory's enables). They never meet a stage-3 write:
        # the pipeline is empty while draining and clearing, and an event taken in the first
        # cycle after either reaches stage 3 three cycles later.
        zero_w = Signal()
        zero_addr = Signal(span(C))
        m.d.sync += zero_w.eq(0)
        m.d.comb += [wp.en.eq(s3_valid | zero_w), wp.addr.eq(Mux(zero_w, zero_addr, s3_acc))]
        for lane in range(P):
            xnor = ~(s3_w[lane] ^ s3_pol)
            if g.is_spatial:
                delta = Signal(range(-1, 2), name=f"delta{lane}")
                with m.Switch(s3_mode):
                    with m.Case(OpMode.WEIGHTS):
                        m.d.comb += delta.eq(Mux(xnor, 1, -1))
                    with m.Case(OpMode.LANE):
                        m.d.comb += delta.eq(s3_lane == lane)
                m.d.comb += wp.data[lane].eq(Mux(zero_w, 0, base[lane] + delta))
            else:
                m.d.comb += wp.data[lane].eq(Mux(zero_w, 0, base[lane] + Mux(xnor, 1, -1)))

        # ---- drain: one group of U neurons per cycle from a registered read ----
        # Order: chunk k, lane group q of its words, output position (flat order for a
        # spatial layer, channel o = k * P + q; a dense layer has one position).
        G = max(g.groups)
        d_g = Signal(span(G))
        d_pg = Signal(span(G))
        d_addr = Signal(span(C))
        d_k = Signal(span(C))
        d_q = Signal(span(Q))
        d_pos = Signal(span(max(g.positions)))
        d_more = Signal()
        d_at_last = Signal()        # d_g == n_groups - 1, kept as a register (timing)
        o_valid = Signal()
        o_g = Signal(span(G))
        o_pg = Signal(span(G))
        o_addr = Signal(span(C))
        o_q = Signal(span(Q))
        o_zero = Signal()
        o_last = Signal()

        m.d.comb += [
            self.o_input.valid.eq(o_valid),
            self.o_input.payload.group.eq(o_g),
            self.o_input.payload.param.eq(o_pg),
            self.o_input.payload.last.eq(o_last),
        ]
        # The U sums of group o_q of the word the read port shows.
        fw = U * g.syn_w
        flat = rp.data.as_value()
        group_word = Signal(fw)
        # One-word accumulators (the parallel core: Q = P / U groups, e.g. 25, of hundreds of
        # bits each): the read port shows the one word all through the drain (it is read every
        # cycle, and nothing writes it until the drain's zeroing write), and group o_q is
        # selected by a one-hot register, an AND-OR per bit (timing: a binary 25-way select
        # fanned out to every bit, then a shift register whose enable, the drain's handshake,
        # reached 4,224 flip-flops, were the core's longest paths).
        one_hot = g.acc_in_flip_flops and Q > 1
        o_sel = Signal(max(Q, 1))   # one-hot o_q
        if one_hot:
            m.d.comb += group_word.eq(
                reduce(operator.or_, [flat[q * fw:(q + 1) * fw] & o_sel[q].replicate(fw)
                                      for q in range(Q)]))
        elif Q > 1:
            with m.Switch(o_q):
                for q in range(Q):
                    with m.Case(q):
                        m.d.comb += group_word.eq(flat[q * fw:(q + 1) * fw])
        else:
            m.d.comb += group_word.eq(flat[:fw])
        for u in range(U):
            m.d.comb += self.o_input.payload.value[u].eq(
                group_word[u * g.syn_w:(u + 1) * g.syn_w].as_signed())

        clr = Signal(span(C))
        # High exactly in the CLEAR state, as a register (timing: it gates the event input).
        busy = Signal()
        m.d.comb += self.busy.eq(busy)

        def on_clear():
            # Last in every state, so that it overrides the state's own transitions.
            with m.If(self.clear):
                m.d.sync += [k.eq(0), k_zero.eq(1), k_last.eq(0), busy.eq(1),
                             o_valid.eq(0), clr.eq(0), s1_valid.eq(0),
                             s2_valid.eq(0), s3_valid.eq(0), forward.eq(0)]
                m.next = "CLEAR"

        with m.FSM():
            with m.State("ACCUM"):
                m.d.comb += [rp.en.eq(1), rp.addr.eq(s1_acc)]
                with m.If(k_zero):
                    with m.If(ev_valid):
                        m.d.comb += ev_take.eq(1)
                        with m.If(ev.flush):
                            m.d.sync += [d_g.eq(0), d_pg.eq(0), d_addr.eq(0), d_k.eq(0),
                                         d_q.eq(0), d_pos.eq(0), d_more.eq(1),
                                         d_at_last.eq(n_groups == 1), o_valid.eq(0)]
                            m.next = "SETTLE"
                        with m.Else():
                            m.d.comb += [iss.eq(1), iss_row.eq(ev.row), iss_acc.eq(ev.acc),
                                         iss_pol.eq(ev.polarity), iss_mode.eq(ev.mode),
                                         iss_lane.eq(ev.lane)]
                            m.d.sync += [cur_row.eq(ev.row + 1), cur_acc.eq(ev.acc + 1),
                                         cur_pol.eq(ev.polarity)]
                            with m.If(multi_chunk & ~ev.single):
                                m.d.sync += [k.eq(1), k_zero.eq(0), k_last.eq(chunks == 2)]
                with m.Else():
                    m.d.comb += [iss.eq(1), iss_row.eq(cur_row), iss_acc.eq(cur_acc),
                                 iss_pol.eq(cur_pol), iss_mode.eq(OpMode.WEIGHTS)]
                    m.d.sync += [cur_row.eq(cur_row + 1), cur_acc.eq(cur_acc + 1)]
                    with m.If(k_last):
                        m.d.sync += [k.eq(0), k_zero.eq(1), k_last.eq(0)]
                    with m.Else():
                        m.d.sync += [k.eq(k + 1), k_last.eq(k + 2 == chunks)]
                on_clear()

            with m.State("SETTLE"):
                # The last operation's accumulator read is done; its write lands in the first
                # DRAIN cycle, which the transparent read port shows.
                m.d.comb += [rp.en.eq(1), rp.addr.eq(s1_acc)]
                m.next = "DRAIN"
                on_clear()

            with m.State("DRAIN"):
                advance = ~o_valid | self.o_input.ready
                # (a one-word memory in flip-flops is read every cycle: no enable fanned out
                # from the handshake to its read register)
                m.d.comb += [rp.en.eq(1 if g.acc_in_flip_flops else advance), rp.addr.eq(d_addr)]
                pos_last = d_pos == n_pos - 1
                word_last = (d_q == Q - 1) | (d_pg == n_pgroups - 1)
                with m.If(advance):
                    m.d.sync += [o_valid.eq(d_more), o_g.eq(d_g), o_pg.eq(d_pg), o_addr.eq(d_addr),
                                 o_q.eq(d_q), o_sel.eq(Cat(d_q == q for q in range(max(Q, 1)))), o_zero.eq(word_last),
                                 o_last.eq(d_at_last)]
                    with m.If(d_more):
                        m.d.sync += [d_g.eq(d_g + 1), d_at_last.eq(d_g + 2 == n_groups)]
                        with m.If(d_at_last):
                            m.d.sync += d_more.eq(0)
                        with m.If(pos_last):
                            m.d.sync += [d_pos.eq(0), d_pg.eq(d_pg + 1)]
                            with m.If(word_last):
                                m.d.sync += [d_q.eq(0), d_k.eq(d_k + 1), d_addr.eq(d_k + 1)]
                            with m.Else():
                                m.d.sync += [d_q.eq(d_q + 1), d_addr.eq(d_k)]
                        with m.Else():
                            m.d.sync += [d_pos.eq(d_pos + 1), d_addr.eq(d_addr + chunks)]
                with m.If(self.o_input.valid & self.o_input.ready):
                    with m.If(o_zero):
                        m.d.sync += [zero_w.eq(1), zero_addr.eq(o_addr)]
                    with m.If(o_last):
                        m.d.sync += o_valid.eq(0)
                        m.next = "ACCUM"
                on_clear()

            with m.State("CLEAR"):
                m.d.sync += [zero_w.eq(1), zero_addr.eq(clr), clr.eq(clr + 1)]
                with m.If(clr == C - 1):
                    m.d.sync += [clr.eq(0), busy.eq(0)]
                    m.next = "ACCUM"
                on_clear()

        return m
