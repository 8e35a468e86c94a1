"""The event-driven BSNN core: sequencer (steps, layers, events) around the datapath units."""
from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import LAYER_WIDTH, STEP_WIDTH, CoreGeometry, HardwareConfig, span
from .images import bias_image, global_words, layer_mode_words, threshold_image, weight_words
from .layouts import (ConfigTarget, ConfigWriteLayout, ErrorBit, GlobalAddress, InputEventLayout,
                      NeuronCommandLayout, ReadoutRule, ResultKind, ResultLayout)
from .neuron import NeuronUnit
from .readout import ReadoutUnit
from .synapse import SynapseUnit
from .weights import WeightMemory

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
        Consumed only while busy, up to and including the T-th ``end_of_step``. An event with
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
    def __init__(self, bundle, hw: HardwareConfig | None = None):
        hw = HardwareConfig() if hw is None else hw
        self.geom = g = CoreGeometry.from_bundle(bundle, hw)
        self.hw = hw
        self._weights = weight_words(bundle, g)
        self._bias = bias_image(bundle)
        self._threshold = threshold_image(bundle)
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

    def elaborate(self, platform):
        g = self.geom
        L = g.n_layers
        m = Module()

        m.submodules.weights = wmem = WeightMemory(g, init=self._weights)
        m.submodules.synapse = syn = SynapseUnit(g)
        m.submodules.neuron = neu = NeuronUnit(g, bias=self._bias, threshold=self._threshold,
                                               modes=self._modes)
        m.submodules.readout = rdo = ReadoutUnit(g)
        wiring.connect(m, syn.weights, wmem.read)
        if g.fifo_depth:
            # Depth: the largest hidden layer, + 1 because the FIFO's output register takes its
            # first entry one cycle late (with depth N, a 2-neuron layer spiking back to back
            # would stall the update for a cycle), and at least 3 (see SyncFIFOBuffered).
            m.submodules.spikes = spikes = fifo.SyncFIFOBuffered(
                width=g.idx_w, depth=max(3, g.fifo_depth + 1))

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
        n_in = Signal(range(g.max_input_events + 1))
        n_spk = Signal(range(max(g.layer_sizes) + 1))   # spikes of the layer being updated
        remaining = Signal(range(max(g.layer_sizes) + 1))
        dump_j = Signal(span(g.layer_sizes[-1]))
        dump_more = Signal()
        error = Signal(ErrorBit.WIDTH)
        cycles = Signal(32)
        done = Signal()
        m.d.comb += [syn.layer.eq(layer), neu.layer.eq(layer), neu.step.eq(t),
                     self.error.eq(error), self.cycles.eq(cycles), self.done.eq(done)]
        m.d.sync += done.eq(0)

        # ---- config port: fan out to the always-ready units while idle ----
        idle = Signal()
        cfg = self.i_config.payload
        m.d.comb += self.i_config.ready.eq(idle)
        for unit in (wmem, neu):
            m.d.comb += [unit.i_write.valid.eq(self.i_config.valid & idle),
                         unit.i_write.payload.eq(cfg)]
        with m.If(self.i_config.valid & idle & (cfg.target == ConfigTarget.GLOBAL)):
            with m.Switch(cfg.address):
                with m.Case(GlobalAddress.TIME_STEPS):
                    m.d.sync += T.eq(cfg.data)
                with m.Case(GlobalAddress.READOUT):
                    m.d.sync += rule.eq(cfg.data)
                with m.Case(GlobalAddress.MAX_INPUT_EVENTS):
                    m.d.sync += max_ev.eq(cfg.data)
                with m.Case(GlobalAddress.TRACE):
                    m.d.sync += trace_en.eq(cfg.data[0])

        last_step = Signal()
        m.d.comb += last_step.eq(t + 1 >= T)
        res = self.o_results.payload
        ev = self.i_events.payload
        sev = syn.i_event.payload
        nres = neu.o_result.payload

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.start):
                    m.d.comb += [syn.clear.eq(1), neu.clear.eq(1), rdo.clear.eq(1)]
                    m.d.sync += [t.eq(0), layer.eq(0), n_in.eq(0), n_spk.eq(0), error.eq(0),
                                 cycles.eq(0)]
                    m.next = "CLEAR"

            with m.State("CLEAR"):
                with m.If(~syn.busy & ~neu.busy):
                    m.next = "ACCUM"

            with m.State("ACCUM"):
                # Events into layer `layer`: input events, or the previous layer's spikes.
                with m.If(layer == 0):
                    with m.If(ev.end_of_step):
                        m.d.comb += [syn.i_event.valid.eq(self.i_events.valid), sev.flush.eq(1),
                                     self.i_events.ready.eq(syn.i_event.ready)]
                        with m.If(self.i_events.valid & syn.i_event.ready):
                            m.d.sync += n_in.eq(0)
                            m.next = "UPDATE"
                    with m.Elif(ev.index >= g.sizes[0]):
                        m.d.comb += self.i_events.ready.eq(1)
                        with m.If(self.i_events.valid):
                            m.d.sync += error[ErrorBit.INDEX].eq(1)
                    with m.Elif((n_in >= max_ev) | (n_in == g.max_input_events)):
                        m.d.comb += self.i_events.ready.eq(1)
                        with m.If(self.i_events.valid):
                            m.d.sync += error[ErrorBit.OVERFLOW].eq(1)
                    with m.Else():
                        m.d.comb += [syn.i_event.valid.eq(self.i_events.valid),
                                     sev.index.eq(ev.index), sev.polarity.eq(ev.polarity),
                                     self.i_events.ready.eq(syn.i_event.ready)]
                        with m.If(self.i_events.valid & syn.i_event.ready):
                            m.d.sync += n_in.eq(n_in + 1)
                if g.fifo_depth:
                    with m.Else():
                        with m.If(remaining == 0):
                            m.d.comb += [syn.i_event.valid.eq(1), sev.flush.eq(1)]
                            with m.If(syn.i_event.ready):
                                m.next = "UPDATE"
                        with m.Else():
                            m.d.comb += [syn.i_event.valid.eq(spikes.r_stream.valid),
                                         sev.index.eq(spikes.r_stream.payload),
                                         sev.polarity.eq(1),
                                         spikes.r_stream.ready.eq(syn.i_event.ready)]
                            with m.If(spikes.r_stream.valid & syn.i_event.ready):
                                m.d.sync += remaining.eq(remaining - 1)

            with m.State("UPDATE"):
                m.d.comb += [neu.i_cmd.valid.eq(syn.o_input.valid),
                             neu.i_cmd.payload.index.eq(syn.o_input.payload.index),
                             neu.i_cmd.payload.value.eq(syn.o_input.payload.value),
                             neu.i_cmd.payload.last.eq(syn.o_input.payload.last),
                             syn.o_input.ready.eq(neu.i_cmd.ready)]
                is_hidden = Signal()
                need_trace = Signal()
                need_fifo = Signal()
                fifo_ready = Signal()
                m.d.comb += [
                    is_hidden.eq(layer != L - 1),
                    need_trace.eq(nres.spike & trace_en if g.trace else 0),
                    need_fifo.eq(nres.spike & is_hidden if g.fifo_depth else 0),
                    fifo_ready.eq(spikes.w_stream.ready if g.fifo_depth else 1),
                ]
                # Fork: a spike goes to the trace output and (hidden layers) the spike queue;
                # each side transfers only together with the other.
                m.d.comb += [
                    self.o_results.valid.eq(neu.o_result.valid & need_trace
                                            & (~need_fifo | fifo_ready)),
                    res.kind.eq(ResultKind.SPIKE), res.step.eq(t), res.layer.eq(layer + 1),
                    res.index.eq(nres.index), res.value.eq(nres.v),
                    neu.o_result.ready.eq((~need_trace | self.o_results.ready)
                                          & (~need_fifo | fifo_ready)),
                ]
                if g.fifo_depth:
                    m.d.comb += [spikes.w_stream.valid.eq(neu.o_result.valid & need_fifo
                                                          & (~need_trace | self.o_results.ready)),
                                 spikes.w_stream.payload.eq(nres.index)]
                with m.If(neu.o_result.valid & neu.o_result.ready):
                    with m.If(nres.spike):
                        m.d.sync += n_spk.eq(n_spk + 1)
                    with m.If(nres.last):
                        m.d.sync += n_spk.eq(0)
                        with m.If(is_hidden):
                            m.d.sync += [layer.eq(layer + 1), remaining.eq(n_spk + nres.spike)]
                            m.next = "SETTLE"
                        with m.Elif(last_step):
                            m.d.sync += [dump_j.eq(0), dump_more.eq(1)]
                            m.next = "DUMP"
                        with m.Else():
                            m.d.sync += [t.eq(t + 1), layer.eq(0)]
                            m.next = "ACCUM"

            with m.State("SETTLE"):
                # One cycle for the spike queue's output register to catch up with its input.
                m.next = "ACCUM"

            with m.State("DUMP"):
                cmd = neu.i_cmd.payload
                m.d.comb += [neu.i_cmd.valid.eq(dump_more), cmd.index.eq(dump_j), cmd.dump.eq(1),
                             cmd.last.eq(dump_j == g.layer_sizes[-1] - 1)]
                with m.If(neu.i_cmd.valid & neu.i_cmd.ready):
                    m.d.sync += dump_j.eq(dump_j + 1)
                    with m.If(cmd.last):
                        m.d.sync += dump_more.eq(0)
                m.d.comb += [
                    # The readout is always ready during the dump; it observes the transfers.
                    self.o_results.valid.eq(neu.o_result.valid & rdo.i_cand.ready),
                    res.kind.eq(ResultKind.POTENTIAL), res.step.eq(t), res.layer.eq(L),
                    res.index.eq(nres.index), res.value.eq(nres.v),
                    rdo.i_cand.valid.eq(neu.o_result.valid & self.o_results.ready),
                    rdo.i_cand.payload.eq(nres),
                    neu.o_result.ready.eq(self.o_results.ready & rdo.i_cand.ready),
                ]
                with m.If(neu.o_result.valid & neu.o_result.ready & nres.last):
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
