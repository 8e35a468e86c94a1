"""Spike replay: a hidden layer's spikes, queued as groups, replayed as events into the next layer."""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry
from .lane_select import LaneSelect
from .single_port import SinglePortFIFO
from .layouts import SpikeGroupLayout, SynapseEventLayout

__all__ = ["SpikeReplay"]


class SpikeReplay(wiring.Component):
    """The spike queue between a hidden layer's update and the next layer's accumulation.

    While a hidden layer is updated, every group of ``U`` neurons with at least one spike is
    written as one entry ``(group, mask)``; ``load`` (the layer is done) makes the entries
    written since the previous ``load`` the next layer's events. While ``enable`` is high they
    are replayed, lowest set mask bit first, as synapse events of polarity 1 (one per cycle),
    followed by a flush once every loaded entry has been replayed.

    Ports
    -----
    i_groups : In(stream.Signature(SpikeGroupLayout))
        Spike-queue entries. The queue holds the most groups of a hidden layer, so it never
        fills while the core keeps the order update, load, replay: the writer does not look at
        ``ready`` (timing), and the entry count is taken from ``valid`` alone.
    o_events : Out(stream.Signature(SynapseEventLayout))
        Valid only while ``enable``: one event per spike of the loaded entries, then a flush
        (valid at once when none is left).
    enable : In(1)
        The sequencer is accumulating a layer after the first (held until the flush is taken).
    load : In(1)
        Pulse: the entries written so far are the next layer's events (not while ``enable``).

    Latency: an entry written in one cycle can be replayed two cycles later (the queue's output
    register takes its first entry one cycle late; the sequencer's NEXT cycle covers it).
    ``no_remaining`` is kept equal to ``remaining == 0`` (registered for timing;
    tests/formal/test_formal_shadow_flags.py proves it).
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        super().__init__({
            "i_groups": In(stream.Signature(SpikeGroupLayout(geom.group_w, geom.neuron_lanes))),
            "o_events": Out(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "enable": In(1),
            "load": In(1),
        })
        counter = range(max(geom.groups) + 1)
        self.n_words = Signal(counter)        # entries written since the last load
        self.remaining = Signal(counter)      # loaded entries not replayed yet
        # remaining == 0, as a register (timing). Starts at 1 with remaining = 0.
        self.no_remaining = Signal(init=1)

    def elaborate(self, platform):
        g = self._geom
        U = g.neuron_lanes
        m = Module()
        n_words, remaining, no_remaining = self.n_words, self.remaining, self.no_remaining

        # Entries: one per group of U neurons with at least one spike (depth derived in
        # CoreGeometry.spike_queue_depth, the one place the manifest and memory plan read too).
        group_layout = SpikeGroupLayout(g.group_w, U)
        if g.queue_memory == "bram":
            m.submodules.queue = queue = fifo.SyncFIFOBuffered(
                width=group_layout.size,
                depth=g.spike_queue_depth)
        else:       # one port: SPRAM on the iCE40UP5K (the same cycles, see SinglePortFIFO)
            m.submodules.queue = queue = SinglePortFIFO(
                group_layout.size, max(g.groups[:-1]), spram=g.queue_memory == "spram")
        m.d.comb += [queue.w_stream.valid.eq(self.i_groups.valid),
                     queue.w_stream.payload.eq(self.i_groups.payload),
                     self.i_groups.ready.eq(queue.w_stream.ready)]
        with m.If(self.i_groups.valid):
            m.d.sync += n_words.eq(n_words + 1)

        # The head entry's spikes, lowest lane first; `taken` marks those already replayed.
        head = group_layout(queue.r_stream.payload)
        taken = Signal(U)
        pick = LaneSelect(m, head.mask & ~taken, "replay")
        last = pick.last
        log_u = U.bit_length() - 1     # (U is a power of two: the index is group * U + lane)

        out = self.o_events
        with m.If(self.enable):
            with m.If(no_remaining):
                m.d.comb += [out.valid.eq(1), out.payload.flush.eq(1)]
            with m.Else():
                m.d.comb += [out.valid.eq(queue.r_stream.valid),
                             out.payload.index.eq(Cat(pick.index[:log_u], head.group)),
                             out.payload.polarity.eq(1),
                             # (gated with valid: no X from an empty queue's payload reaches
                             # the FIFO in simulation)
                             queue.r_stream.ready.eq(queue.r_stream.valid & out.ready & last)]
                with m.If(queue.r_stream.valid & out.ready):
                    with m.If(last):
                        m.d.sync += [remaining.eq(remaining - 1),
                                     no_remaining.eq(remaining == 1), taken.eq(0)]
                    with m.Else():
                        m.d.sync += taken.eq(taken | pick.onehot)

        with m.If(self.load):
            m.d.sync += [n_words.eq(0), remaining.eq(n_words), no_remaining.eq(n_words == 0)]
        return m
