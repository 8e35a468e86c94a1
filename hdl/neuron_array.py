"""Neuron array: the ``U`` neuron banks, updated in lockstep one group of ``U`` neurons per cycle."""
from amaranth.hdl import Cat, Module, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .config import LAYER_WIDTH, STEP_WIDTH, CoreGeometry, span
from .images import bias_image, threshold_image
from .layouts import ConfigWriteLayout, NeuronResultLayout, SynapticInputLayout
from .neuron import NeuronUnit
from .slice import RegisterSlice

__all__ = ["NeuronArray", "GroupCommandLayout", "GroupResultLayout", "bank_image", "bank_images"]


def bank_image(geom: CoreGeometry, image, u: int, pad: int) -> list:
    """The part of a concatenated bias / threshold image (layers in order; one value per dense
    neuron, per conv2d channel) that bank ``u`` holds, in bank order: value ``j`` of layer ``l``
    at ``bank_base[l] + j // U`` of bank ``j % U``; ``pad`` where a group's lane is beyond its
    layer."""
    out = []
    for l, n in enumerate(geom.param_sizes):
        base = geom.neuron_base[l]
        for grp in range(geom.param_groups[l]):
            j = grp * geom.neuron_lanes + u
            out.append(image[base + j] if j < n and base + j < len(image) else pad)
    return out


def bank_images(bundle, geom: CoreGeometry) -> tuple:
    """``(bias, threshold)``: the images of every bank for ``bundle``, in memory order."""
    bias, threshold = bias_image(bundle), threshold_image(bundle)
    U = geom.neuron_lanes
    return ([bank_image(geom, bias, u, 0) for u in range(U)],
            [bank_image(geom, threshold, u, 1) for u in range(U)])


class GroupCommandLayout(data.StructLayout):
    """An entry of the command queue: a group's synaptic inputs, or (``dump = 1``) a request
    to report the group's stored state."""
    def __init__(self, group_w, syn_w, U):
        super().__init__({"cmd": SynapticInputLayout(group_w, syn_w, U), "dump": 1})


class GroupResultLayout(data.ArrayLayout):
    """The results of one group: element ``u`` is neuron ``group * U + u``."""
    def __init__(self, idx_w, v_width, U):
        super().__init__(NeuronResultLayout(idx_w, v_width), U)


class NeuronArray(wiring.Component):
    """``U = neuron_lanes`` :class:`NeuronUnit` banks that take one group of ``U`` neurons per
    cycle, all in lockstep; bank ``u`` holds neurons ``j = group * U + u``.

    Commands enter a 2-entry queue (timing: the synapse drain's handshake does not meet the
    banks' pipeline enable). With ``CoreGeometry.result_queue`` the banks never stall: they have
    no result register, their results enter a queue of ``result_queue_depth`` groups, and the
    command queue issues a group only while that queue has room for every group in flight
    (``owed``, a count of groups issued and not yet taken; ``room``, its comparison, registered),
    so the emitter's ready reaches no pipeline register. The same cycles either way. While ``dump`` is high the queue takes, instead of the synapse
    drain's groups, the output layer's dump commands, generated here in ascending group order
    from ``dump_start`` on: the banks only ever take commands from the queue, so their
    pipeline enable never depends on the sequencer's state. Lanes beyond the layer's size
    (padding of the last group) only report, never write back.

    Parameters
    ----------
    geom : CoreGeometry
    bias, threshold : list of lists
        Initial bank images (:func:`bank_images`, or a bitstream's templates), one per bank.
    modes : list of int
        Initial LAYER_MODE words.

    Ports
    -----
    i_cmd : In(stream.Signature(SynapticInputLayout))
        The synapse drain's groups of layer ``layer``, ``last`` on the layer's final one.
        Ready from the queue's fill level, also while ``dump`` (nothing is drained then).
    o_result : Out(stream.Signature(GroupResultLayout))
        One group of ``U`` results per command, in order, ``neuron_latency + 1`` cycles after
        the command is taken (queue and bank pipeline); one per cycle while ready.
    dump, dump_start : In(1)
        ``dump_start`` (pulse) restarts the dump at group 0; while ``dump`` is high one dump
        command of the output layer enters the queue per cycle until its last group.
    layer : In(LAYER_WIDTH)
    step : In(STEP_WIDTH)
    clear : In(1)
        As :class:`NeuronUnit` (to every bank).
    i_write : In(stream.Signature(ConfigWriteLayout)).array(U)
        Config writes of bank ``u`` (bank-local addresses); always ready.
    """
    def __init__(self, geom: CoreGeometry, *, bias, threshold, modes):
        self._geom = geom
        self._bias = [list(b) for b in bias]
        self._threshold = [list(t) for t in threshold]
        self._modes = list(modes)
        U = geom.neuron_lanes
        super().__init__({
            "i_cmd": In(stream.Signature(SynapticInputLayout(geom.group_w, geom.syn_w, U))),
            "o_result": Out(stream.Signature(GroupResultLayout(geom.idx_w, geom.v_width, U))),
            "dump": In(1),
            "dump_start": In(1),
            "layer": In(LAYER_WIDTH),
            "step": In(STEP_WIDTH),
            "clear": In(1),
            "i_write": In(stream.Signature(
                ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))).array(U),
        })

    def elaborate(self, platform):
        g = self._geom
        U = g.neuron_lanes
        m = Module()
        banks = []
        for u in range(U):
            bank = NeuronUnit(g, bias=self._bias[u], threshold=self._threshold[u],
                              modes=self._modes, sizes=g.state_groups, param_sizes=g.param_groups,
                              result_register=not g.result_queue)
            m.submodules[f"neuron{u}" if U > 1 else "neuron"] = bank
            wiring.connect(m, wiring.flipped(self.i_write[u]), bank.i_write)
            m.d.comb += [bank.layer.eq(self.layer), bank.step.eq(self.step),
                         bank.clear.eq(self.clear)]
            banks.append(bank)

        # ---- command queue: the synapse drain's groups, or the output layer's dump ----
        cmd_layout = SynapticInputLayout(g.group_w, g.syn_w, U)
        m.submodules.queue = queue = RegisterSlice(GroupCommandLayout(g.group_w, g.syn_w, U))
        dump_g = Signal(span(g.groups[-1]))
        dump_more = Signal()
        dump_cmd = Signal(cmd_layout)
        m.d.comb += [dump_cmd.group.eq(dump_g), dump_cmd.param.eq(dump_g),
                     dump_cmd.last.eq(dump_g == g.groups[-1] - 1),
                     # (no gating by `dump`: the synapse unit has nothing to drain then)
                     self.i_cmd.ready.eq(queue.i.ready)]
        with m.If(self.dump):
            m.d.comb += [queue.i.valid.eq(dump_more),
                         queue.i.payload.cmd.eq(dump_cmd), queue.i.payload.dump.eq(1)]
            with m.If(queue.i.valid & queue.i.ready):
                m.d.sync += dump_g.eq(dump_g + 1)
                with m.If(dump_cmd.last):
                    m.d.sync += dump_more.eq(0)
        with m.Else():
            m.d.comb += [queue.i.valid.eq(self.i_cmd.valid),
                         queue.i.payload.cmd.eq(self.i_cmd.payload)]
        with m.If(self.dump_start):
            m.d.sync += [dump_g.eq(0), dump_more.eq(1)]

        # Size of the layer being processed (lanes at or beyond it are padding).
        n_size = Signal(range(max(g.layer_sizes) + 1))
        with m.Switch(self.layer):
            for l in range(g.n_layers):
                with m.Case(l):
                    m.d.comb += n_size.eq(g.layer_sizes[l])
        queued = queue.o.payload
        for u, bank in enumerate(banks):
            cmd = bank.i_cmd.payload
            if not g.result_queue:      # (else only with room in the result queue)
                m.d.comb += bank.i_cmd.valid.eq(queue.o.valid)
            m.d.comb += [cmd.index.eq(queued.cmd.group),
                         cmd.param.eq(queued.cmd.param),
                         cmd.value.eq(queued.cmd.value[u]), cmd.last.eq(queued.cmd.last)]
            if U > 1:
                # Padding lanes beyond the layer: report only, never write back.
                m.d.comb += cmd.dump.eq(queued.dump | (queued.cmd.group * U + u >= n_size))
            else:
                m.d.comb += cmd.dump.eq(queued.dump)
        if g.result_queue:
            self._result_queue(m, banks, queue)
        else:
            m.d.comb += queue.o.ready.eq(banks[0].i_cmd.ready)
            # ---- results: the banks move in lockstep ----
            m.d.comb += self.o_result.valid.eq(banks[0].o_result.valid)
            for u, bank in enumerate(banks):
                m.d.comb += [self.o_result.payload[u].eq(bank.o_result.payload),
                             bank.o_result.ready.eq(self.o_result.ready)]
        return m

    def _result_queue(self, m, banks, queue):
        """The non-stalling banks' result queue and the credit that issues commands."""
        g = self._geom
        depth = g.result_queue_depth
        fifo = SyncFIFO(width=self.o_result.payload.shape().size, depth=depth)
        m.submodules.results = ResetInserter(self.clear)(fifo)
        owed = Signal(range(depth + 1))      # groups issued and not yet taken from the queue
        room = Signal(init=1)                # owed < depth, registered
        issue, take = Signal(), Signal()
        owed_next = Signal(range(depth + 2))
        # (a bank with single-port state takes a group only in every second cycle)
        can_issue = room & banks[0].i_cmd.ready if g.state_memory != "bram" else room
        m.d.comb += [issue.eq(queue.o.valid & can_issue), queue.o.ready.eq(can_issue),
                     take.eq(fifo.r_rdy & self.o_result.ready),
                     owed_next.eq(owed + issue - take)]
        m.d.sync += [owed.eq(owed_next), room.eq(owed_next < depth)]
        with m.If(self.clear):
            m.d.sync += [owed.eq(0), room.eq(1)]
        for bank in banks:
            m.d.comb += [bank.i_cmd.valid.eq(issue), bank.o_result.ready.eq(1)]
        m.d.comb += [fifo.w_en.eq(banks[0].o_result.valid),
                     fifo.w_data.eq(Cat(bank.o_result.payload for bank in banks)),
                     self.o_result.valid.eq(fifo.r_rdy), self.o_result.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o_result.ready)]
