"""The event-driven BSNN core: sequencer (steps, layers, events) around the datapath units."""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import LAYER_WIDTH, STEP_WIDTH, CoreGeometry, HardwareConfig, span
from .images import bias_image, global_words, layer_mode_words, threshold_image, weight_words
from .layouts import (SynapticInputLayout, ConfigTarget, ConfigWriteLayout, ErrorBit, GlobalAddress, InputEventLayout,
                      NeuronResultLayout, ResultKind,
                      ResultLayout, SpikeGroupLayout)
from .neuron import NeuronUnit
from .readout import ReadoutUnit
from .slice import RegisterSlice
from .synapse import SynapseUnit
from .weights import SPRAMWeightMemory, WeightMemory

__all__ = ["BSNNCore"]


class BSNNCore(wiring.Component):
    """Event-driven binary spiking neural network core (docs/architecture.md).

    Built for the geometry of ``bundle`` (sizes, widths) and ``hw`` (lanes, trace, input-event
    capacity); its memories start with the bundle's contents and any bundle of the same build
    key can be loaded through ``i_config`` while idle.

    Ports
    -----
    i_events : In(stream.Signature(InputEventLayout(idx_w)))
        Input events of the running inference, in step order; ``end_of_step`` closes a step.
        They enter a 2-entry queue whenever it has room (also while idle) and are processed
        only while busy, up to and including the T-th ``end_of_step``. An event with
        ``index >= N_0`` or beyond ``max_input_events`` valid events in its step is consumed,
        dropped (it contributes nothing) and flagged in ``error``.
    o_results : Out(stream.Signature(ResultLayout(idx_w, v_width)))
        SPIKE records (build and run-time trace on), then one POTENTIAL record per output
        neuron, then the CLASS record. Backpressure stalls the core.
    i_config : In(stream.Signature(ConfigWriteLayout(cfg_addr_w, cfg_data_w)))
        Parameter writes; ready only while idle, one per cycle.
    start : In(1)
        Pulse while idle: clear the neuron state and run one inference.
    busy : Out(1)
    done : Out(1)
        One-cycle pulse, the cycle after the CLASS record is accepted.
    cycles : Out(32)
        Cycles from the start pulse to the acceptance of the CLASS record (live while busy).
    error : Out(ErrorBit.WIDTH)
        Sticky since start: bit 0 index >= N_0, bit 1 more than max_input_events in a step.
    """
    def __init__(self, bundle, hw: HardwareConfig | None = None, memory_init=None):
        hw = HardwareConfig() if hw is None else hw
        self.geom = g = CoreGeometry.from_bundle(bundle, hw)
        self.hw = hw
        self._weights = weight_words(bundle, g)
        self._bias = bias_image(bundle)
        self._threshold = threshold_image(bundle)
        # Optional replacement power-up contents, as the memories hold them ({"weights": words,
        # "bias": [per bank], "threshold": [per bank]}): bsnn.hdl.bitstream builds with random
        # templates that icebram / ecpbram later replace (hdl/weights_patch.py).
        self._memory_init = dict(memory_init or {})
        self._modes = layer_mode_words(bundle)
        self._globals = global_words(bundle, trace=True)
        super().__init__({
            "i_events": In(stream.Signature(InputEventLayout(g.idx_w))),
            "o_results": Out(stream.Signature(ResultLayout(g.idx_w, g.v_width))),
            "i_config": In(stream.Signature(ConfigWriteLayout(g.cfg_addr_w, g.cfg_data_w))),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "error": Out(ErrorBit.WIDTH),
        })

    def bank_images(self, bundle):
        """The bias and threshold images of every neuron bank for ``bundle`` (memory order)."""
        return ([self._bank_image(bias_image(bundle), u, 0) for u in range(self.geom.neuron_lanes)],
                [self._bank_image(threshold_image(bundle), u, 1)
                 for u in range(self.geom.neuron_lanes)])

    def _bank_image(self, image, u, pad):
        """The part of a concatenated per-neuron image that bank ``u`` holds, in bank order."""
        g = self.geom
        out = []
        for l, n in enumerate(g.layer_sizes):
            base = g.neuron_base[l]
            for grp in range(g.groups[l]):
                j = grp * g.neuron_lanes + u
                out.append(image[base + j] if j < n and base + j < len(image) else pad)
        return out

    def elaborate(self, platform):
        g = self.geom
        L = g.n_layers
        U = g.neuron_lanes
        m = Module()

        if self.hw.weight_memory == "spram":
            m.submodules.weights = wmem = SPRAMWeightMemory(g)
        else:
            m.submodules.weights = wmem = WeightMemory(
                g, init=self._memory_init.get("weights", self._weights),
                bank_words=self.hw.weight_bank_words)
        m.submodules.synapse = syn = SynapseUnit(g)
        banks = []
        for u in range(U):
            mi = self._memory_init
            bank = NeuronUnit(g, bias=mi["bias"][u] if "bias" in mi else self._bank_image(self._bias, u, 0),
                              threshold=mi["threshold"][u] if "threshold" in mi
                              else self._bank_image(self._threshold, u, 1),
                              modes=self._modes, sizes=g.groups)
            m.submodules[f"neuron{u}" if U > 1 else "neuron"] = bank
            banks.append(bank)
        neu = banks[0]
        m.submodules.readout = rdo = ReadoutUnit(g)
        wiring.connect(m, syn.weights, wmem.read)
        hidden_groups = g.groups[:-1]
        if hidden_groups:
            # Entries: one per group of U neurons with at least one spike. Depth: the most
            # groups of a hidden layer, + 1 because the FIFO's output register takes its first
            # entry one cycle late, and at least 3 (see SyncFIFOBuffered).
            group_layout = SpikeGroupLayout(g.group_w, U)
            m.submodules.spikes = spikes = fifo.SyncFIFOBuffered(
                width=group_layout.size, depth=g.spike_queue_depth)

        # ---- run-time globals (configuration: like the memories, kept across rst) ----
        gl = self._globals
        T = Signal(STEP_WIDTH, init=gl[GlobalAddress.TIME_STEPS], reset_less=True)
        rule = Signal(2, init=gl[GlobalAddress.READOUT], reset_less=True)
        max_ev = Signal(g.cfg_data_w, init=gl[GlobalAddress.MAX_INPUT_EVENTS], reset_less=True)
        trace_en = Signal(init=1, reset_less=True)
        m.d.comb += rdo.rule.eq(rule)

        # ---- sequencer registers ----
        t = Signal(STEP_WIDTH)
        layer = Signal(LAYER_WIDTH)
        layer_zero = Signal()       # layer == 0, kept as a register (timing)
        n_in = Signal(range(g.max_input_events + 1))
        # n_in has reached max_ev or the build's capacity: kept as a register (timing).
        in_full = Signal()
        n_words = Signal(range(max(g.groups) + 1))    # spike groups of the layer being updated
        remaining = Signal(range(max(g.groups) + 1))
        no_remaining = Signal()     # remaining == 0, kept as a register (timing)
        dump_g = Signal(span(g.groups[-1]))
        dump_more = Signal()
        error = Signal(ErrorBit.WIDTH)
        cycles = Signal(32)
        done = Signal()
        m.d.comb += [syn.layer.eq(layer), self.error.eq(error), self.cycles.eq(cycles),
                     self.done.eq(done)]
        for bank in banks:
            m.d.comb += [bank.layer.eq(layer), bank.step.eq(t)]
        m.d.sync += done.eq(0)

        # Size of the layer being processed (lanes at or beyond it are padding).
        n_size = Signal(range(max(g.layer_sizes) + 1))
        with m.Switch(layer):
            for l in range(L):
                with m.Case(l):
                    m.d.comb += n_size.eq(g.layer_sizes[l])

        # ---- config port: fan out to the always-ready units while idle ----
        idle = Signal()
        cfg = self.i_config.payload
        m.d.comb += self.i_config.ready.eq(idle)
        # Memory writes go through one register stage (timing: the address decode below starts
        # from flip-flops); they land one cycle after the transfer.
        cfg_v = Signal()
        cfg_r = Signal.like(cfg)
        m.d.sync += [cfg_v.eq(self.i_config.valid & idle), cfg_r.eq(cfg)]
        m.d.comb += [wmem.i_write.valid.eq(cfg_v), wmem.i_write.payload.eq(cfg_r)]
        # BIAS / THRESHOLD address neuron_base[l] + j goes to bank j % U, address
        # bank_base[l] + j // U; LAYER_MODE writes go to every bank.
        log_u = U.bit_length() - 1
        n_sel = Signal(span(U))
        n_local = Signal(g.cfg_addr_w)
        n_in_range = Signal()
        for l in range(L):
            # Layers are tried in order, so the lower bound is implied by the earlier tests.
            cond = cfg_r.address < g.neuron_base[l] + g.layer_sizes[l]
            with (m.If(cond) if l == 0 else m.Elif(cond)):
                j = Signal(g.cfg_addr_w, name=f"cfg_j{l}")
                m.d.comb += [j.eq(cfg_r.address - g.neuron_base[l]), n_in_range.eq(1),
                             n_local.eq(g.bank_base[l] + (j >> log_u))]
                if U > 1:
                    m.d.comb += n_sel.eq(j[:log_u])
        # The decoded bank writes are registered once more (timing: the address decode does
        # not run into the memories' write ports); they land two cycles after the transfer.
        for u, bank in enumerate(banks):
            mine = (cfg_r.target == ConfigTarget.LAYER_MODE) | (n_in_range & (n_sel == u))
            bw = bank.i_write
            m.d.sync += [bw.valid.eq(cfg_v & mine),
                         bw.payload.target.eq(cfg_r.target),
                         bw.payload.data.eq(cfg_r.data),
                         bw.payload.address.eq(
                             Mux(cfg_r.target == ConfigTarget.LAYER_MODE, cfg_r.address, n_local))]
        # GLOBAL registers are written from the same register stage (one cycle after the
        # transfer). A start in that cycle is safe: T and max_ev are first used in CLEAR.
        with m.If(cfg_v & (cfg_r.target == ConfigTarget.GLOBAL)):
            with m.Switch(cfg_r.address):
                with m.Case(GlobalAddress.TIME_STEPS):
                    m.d.sync += T.eq(cfg_r.data)
                with m.Case(GlobalAddress.READOUT):
                    m.d.sync += rule.eq(cfg_r.data)
                with m.Case(GlobalAddress.MAX_INPUT_EVENTS):
                    m.d.sync += max_ev.eq(cfg_r.data)
                with m.Case(GlobalAddress.TRACE):
                    m.d.sync += trace_en.eq(cfg_r.data[0])

        # The units' clear pulse, registered after the start (timing: the start does not fan
        # out through the idle decode into every unit).
        unit_clear = Signal()
        m.d.sync += unit_clear.eq(0)
        m.d.comb += [syn.clear.eq(unit_clear), rdo.clear.eq(unit_clear)]
        for bank in banks:
            m.d.comb += bank.clear.eq(unit_clear)

        # Whether step t is the last one, kept as a register next to t (timing).
        last_step = Signal()
        res = self.o_results.payload
        sev = syn.i_event.payload
        # Input events enter through a 2-entry queue, with their index checked on the way in
        # (timing: the sequencer's state and the index compare do not reach the host link's
        # queue; `ready` depends on the queue's fill level alone).
        ev_layout = InputEventLayout(g.idx_w)
        m.submodules.evin = evin = RegisterSlice(ev_layout.size + 1)
        m.d.comb += [evin.i.valid.eq(self.i_events.valid),
                     evin.i.payload.eq(Cat(self.i_events.payload.as_value(),
                                                  self.i_events.payload.index >= g.sizes[0])),
                     self.i_events.ready.eq(evin.i.ready)]
        ev = ev_layout(evin.o.payload[:ev_layout.size])
        ev_bad_index = evin.o.payload[ev_layout.size]
        ev_in = evin.o

        # ---- register slices (timing): no ready signal crosses from one unit to the next ----
        # synapse drain -> command queue -> neuron banks; banks -> result queue -> sequencer.
        # The queue also carries the output layer's dump commands (DUMP state), so that the
        # banks only ever take commands from it: their pipeline enable never depends on the
        # sequencer's state.
        cmd_layout = SynapticInputLayout(g.group_w, g.syn_w, U)
        m.submodules.cmdq = cmdq = RegisterSlice(cmd_layout.size + 1)
        in_dump = Signal()
        dump_cmd = Signal(cmd_layout)
        m.d.comb += [
            cmdq.i.valid.eq(Mux(in_dump, dump_more, syn.o_input.valid)),
            cmdq.i.payload.eq(Mux(in_dump, Cat(dump_cmd.as_value(), 1),
                                         Cat(syn.o_input.payload.as_value(), 0))),
            # (no gating by the state: the synapse unit has nothing to drain during DUMP)
            syn.o_input.ready.eq(cmdq.i.ready),
            dump_cmd.group.eq(dump_g), dump_cmd.last.eq(dump_g == g.groups[-1] - 1),
        ]
        cin = cmd_layout(cmdq.o.payload[:cmd_layout.size])
        cin_dump = cmdq.o.payload[cmd_layout.size]
        for u, bank in enumerate(banks):
            cmd = bank.i_cmd.payload
            m.d.comb += [bank.i_cmd.valid.eq(cmdq.o.valid),
                         cmd.index.eq(cin.group), cmd.value.eq(cin.value[u]), cmd.last.eq(cin.last)]
            if U > 1:
                # Padding lanes beyond the layer: report only, never write back.
                m.d.comb += cmd.dump.eq(cin_dump | (cin.group * U + u >= n_size))
            else:
                m.d.comb += cmd.dump.eq(cin_dump)
        m.d.comb += cmdq.o.ready.eq(neu.i_cmd.ready)
        res_layout = NeuronResultLayout(g.idx_w, g.v_width)
        # With the group's results the queue carries, per lane, whether the neuron exists in
        # the output layer and whether it is the output layer's last one (used by the dump),
        # compared before the queue (timing: no index arithmetic on the handshake path).
        # So does the UPDATE state's view of the group: which lanes to emit as spike records and
        # whether the group enters the spike queue (timing: no reduction over the lanes and no
        # layer decode on the result handshake either). `is_hidden` changes only in NEXT, when
        # the layer's results have all left the queue.
        is_hidden = Signal()
        trace_mask = Signal(U)
        in_spikes = Cat(*[bank.o_result.payload.spike for bank in banks])
        m.d.comb += trace_mask.eq(Mux(trace_en, in_spikes, 0) if g.trace else 0)
        m.submodules.resq = resq = RegisterSlice(res_layout.size * U + 3 * U + 1)
        in_j0 = Signal(g.idx_w + log_u + 1)
        m.d.comb += in_j0.eq(neu.o_result.payload.index * U)
        m.d.comb += [resq.i.valid.eq(neu.o_result.valid),
                     resq.i.payload.eq(Cat(
                         *[bank.o_result.payload.as_value() for bank in banks],
                         *[in_j0 + u < g.layer_sizes[-1] for u in range(U)],
                         *[in_j0 + u == g.layer_sizes[-1] - 1 for u in range(U)],
                         trace_mask,
                         (in_spikes != 0) & is_hidden if hidden_groups else 0))]
        for bank in banks:
            m.d.comb += bank.o_result.ready.eq(resq.i.ready)
        results = [res_layout(resq.o.payload[u * res_layout.size:(u + 1) * res_layout.size])
                   for u in range(U)]
        flags = resq.o.payload[res_layout.size * U:]
        valid_mask, last_mask, emit_mask = flags[:U], flags[U:2 * U], flags[2 * U:3 * U]
        need_fifo = flags[3 * U]

        # ---- the result group of the neuron banks (all banks move in lockstep) ----
        res_valid = resq.o.valid
        grp_ready = Signal()
        m.d.comb += resq.o.ready.eq(grp_ready)
        j0 = Signal(g.idx_w + log_u + 1)
        m.d.comb += j0.eq(results[0].index * U)
        spike_mask = Signal(U)
        for u in range(U):
            m.d.comb += spike_mask[u].eq(results[u].spike)
        # Lanes of the group still to be emitted as records, one per cycle, lowest first.
        emit = Signal(U)
        sent = Signal(U)
        rem = Signal(U)
        sel = Signal(span(U))
        onehot = Signal(U)
        any_rem = Signal()
        last_one = Signal()
        m.d.comb += rem.eq(emit & ~sent)
        for u in reversed(range(U)):
            with m.If(rem[u]):
                m.d.comb += sel.eq(u)
        m.d.comb += [onehot.eq(rem & (1 << sel)), any_rem.eq(rem != 0),
                     last_one.eq((rem & ~onehot) == 0)]
        lane = Signal(NeuronResultLayout(g.idx_w, g.v_width))
        with m.Switch(sel):
            for u in range(U):
                with m.Case(u):
                    m.d.comb += lane.eq(results[u])
        lane_j = Signal(g.idx_w + log_u + 1)
        m.d.comb += lane_j.eq(j0 + sel)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.start):
                    m.d.sync += [unit_clear.eq(1), t.eq(0), layer.eq(0), layer_zero.eq(1),
                                 is_hidden.eq(L > 1), n_in.eq(0), n_words.eq(0), error.eq(0),
                                 cycles.eq(0), sent.eq(0)]
                    m.next = "CLEAR"

            with m.State("CLEAR"):
                # The units clear from the first cycle here (unit_clear). The neuron banks go on
                # clearing while layer 1 accumulates the first step's events: they take no
                # command before their clear is complete.
                m.d.sync += [last_step.eq(T <= 1), in_full.eq(max_ev == 0)]
                with m.If(~syn.busy & ~unit_clear):
                    m.next = "ACCUM"

            with m.State("ACCUM"):
                # Events into layer `layer`: input events, or the previous layer's spikes.
                with m.If(layer_zero):
                    with m.If(ev.end_of_step):
                        m.d.comb += [syn.i_event.valid.eq(ev_in.valid), sev.flush.eq(1),
                                     ev_in.ready.eq(syn.i_event.ready)]
                        with m.If(ev_in.valid & syn.i_event.ready):
                            m.d.sync += [n_in.eq(0), in_full.eq(max_ev == 0)]
                            m.next = "UPDATE"
                    with m.Elif(ev_bad_index):
                        m.d.comb += ev_in.ready.eq(1)
                        with m.If(ev_in.valid):
                            m.d.sync += error[ErrorBit.INDEX].eq(1)
                    with m.Elif(in_full):
                        m.d.comb += ev_in.ready.eq(1)
                        with m.If(ev_in.valid):
                            m.d.sync += error[ErrorBit.OVERFLOW].eq(1)
                    with m.Else():
                        m.d.comb += [syn.i_event.valid.eq(ev_in.valid),
                                     sev.index.eq(ev.index), sev.polarity.eq(ev.polarity),
                                     ev_in.ready.eq(syn.i_event.ready)]
                        with m.If(ev_in.valid & syn.i_event.ready):
                            m.d.sync += [n_in.eq(n_in + 1),
                                         in_full.eq((n_in + 1 >= max_ev)
                                                    | (n_in + 1 == g.max_input_events))]
                if hidden_groups:
                    with m.Else():
                        head = Signal(group_layout)
                        taken = Signal(U)
                        hrem = Signal(U)
                        hsel = Signal(span(U))
                        hlast = Signal()
                        m.d.comb += [head.eq(spikes.r_stream.payload), hrem.eq(head.mask & ~taken)]
                        for u in reversed(range(U)):
                            with m.If(hrem[u]):
                                m.d.comb += hsel.eq(u)
                        m.d.comb += hlast.eq((hrem & ~(1 << hsel)) == 0)
                        with m.If(no_remaining):
                            m.d.comb += [syn.i_event.valid.eq(1), sev.flush.eq(1)]
                            with m.If(syn.i_event.ready):
                                m.next = "UPDATE"
                        with m.Else():
                            m.d.comb += [syn.i_event.valid.eq(spikes.r_stream.valid),
                                         sev.index.eq(head.group * U + hsel),
                                         sev.polarity.eq(1),
                                         # (gated with valid: no X from an empty
                                         # queue's payload reaches the FIFO in simulation)
                                         spikes.r_stream.ready.eq(spikes.r_stream.valid
                                                                  & syn.i_event.ready & hlast)]
                            with m.If(spikes.r_stream.valid & syn.i_event.ready):
                                with m.If(hlast):
                                    m.d.sync += [remaining.eq(remaining - 1),
                                                 no_remaining.eq(remaining == 1), taken.eq(0)]
                                with m.Else():
                                    m.d.sync += taken.eq(taken | (1 << hsel))

            with m.State("UPDATE"):
                # The spike queue never fills (it holds one layer's groups and is emptied before
                # the next layer's update), so its `ready` is not waited for (timing).
                m.d.comb += emit.eq(emit_mask)
                # A group is finished when its last traced spike record is accepted (at once
                # when it has none) together with its spike-queue entry (hidden layers).
                finishing = Signal()
                m.d.comb += [
                    finishing.eq(~any_rem | (last_one & self.o_results.ready)),
                    self.o_results.valid.eq(res_valid & any_rem),
                    res.kind.eq(ResultKind.SPIKE), res.step.eq(t), res.layer.eq(layer + 1),
                    res.index.eq(lane_j), res.value.eq(lane.v),
                    grp_ready.eq(res_valid & finishing),
                ]
                if hidden_groups:
                    m.d.comb += [spikes.w_stream.valid.eq(res_valid & need_fifo & finishing),
                                 spikes.w_stream.payload.eq(
                                     Cat(results[0].index[:g.group_w], spike_mask))]
                with m.If(self.o_results.valid & self.o_results.ready & ~last_one):
                    m.d.sync += sent.eq(sent | onehot)
                with m.If(res_valid & grp_ready):
                    m.d.sync += sent.eq(0)
                    with m.If(need_fifo):
                        m.d.sync += n_words.eq(n_words + 1)
                    with m.If(results[0].last):
                        m.next = "NEXT"

            with m.State("NEXT"):
                # The layer is done. Deciding what follows here, from registers only, keeps the
                # step / layer counters off the result handshake's path (timing); for a hidden
                # layer the cycle also lets the spike queue's output register catch up with its
                # last write, so that the cycle count does not depend on which neurons spiked.
                # The spike groups the layer queued are what the next layer reads.
                m.d.sync += [n_words.eq(0), remaining.eq(n_words), no_remaining.eq(n_words == 0)]
                with m.If(is_hidden):
                    m.d.sync += [layer.eq(layer + 1), layer_zero.eq(0),
                                 is_hidden.eq(layer + 1 != L - 1)]
                    m.next = "ACCUM"
                with m.Elif(last_step):
                    m.d.sync += [dump_g.eq(0), dump_more.eq(1)]
                    m.next = "DUMP"
                with m.Else():
                    m.d.sync += [t.eq(t + 1), last_step.eq(t + 2 >= T), layer.eq(0),
                                 layer_zero.eq(1), is_hidden.eq(L > 1)]
                    m.next = "ACCUM"

            with m.State("DUMP"):
                m.d.comb += in_dump.eq(1)
                with m.If(cmdq.i.valid & cmdq.i.ready):
                    m.d.sync += dump_g.eq(dump_g + 1)
                    with m.If(dump_cmd.last):
                        m.d.sync += dump_more.eq(0)
                xfer = Signal()
                cand_last = Signal()
                m.d.comb += [
                    emit.eq(valid_mask),
                    cand_last.eq((last_mask & onehot) != 0),
                    # The readout is always ready during the dump; it observes the transfers.
                    self.o_results.valid.eq(res_valid & any_rem & rdo.i_cand.ready),
                    res.kind.eq(ResultKind.POTENTIAL), res.step.eq(t), res.layer.eq(L),
                    res.index.eq(lane_j), res.value.eq(lane.v),
                    rdo.i_cand.valid.eq(res_valid & any_rem & self.o_results.ready),
                    rdo.i_cand.payload.eq(lane),
                    rdo.i_cand.payload.index.eq(lane_j),
                    rdo.i_cand.payload.last.eq(cand_last),
                    xfer.eq(res_valid & any_rem & self.o_results.ready & rdo.i_cand.ready),
                    grp_ready.eq(xfer & last_one),
                ]
                with m.If(xfer):
                    m.d.sync += sent.eq(Mux(last_one, 0, sent | onehot))
                    with m.If(cand_last):
                        m.next = "CLASS"

            with m.State("CLASS"):
                m.d.comb += [
                    self.o_results.valid.eq(rdo.o_class.valid),
                    res.kind.eq(ResultKind.CLASS), res.step.eq(t), res.layer.eq(L),
                    res.index.eq(rdo.o_class.payload.index), res.value.eq(rdo.o_class.payload.value),
                    rdo.o_class.ready.eq(self.o_results.ready),
                ]
                with m.If(rdo.o_class.valid & self.o_results.ready):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~idle)
        with m.If(~idle):
            m.d.sync += cycles.eq(cycles + 1)
        return m
