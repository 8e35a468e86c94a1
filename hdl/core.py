"""The event-driven BSNN core: its units, instantiated and connected (docs/architecture.md)."""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CYCLES_WIDTH, STEP_WIDTH, CoreGeometry, HardwareConfig
from .config_decoder import ConfigDecoder
from .images import global_words, layer_mode_words, weight_words
from .input_filter import InputFilter
from .layouts import ConfigWriteLayout, ErrorBit, InputEventLayout, ResultLayout
from .neuron_array import NeuronArray, bank_images
from .readout import ReadoutUnit
from .result_emitter import ResultEmitter
from .sequencer import Sequencer
from .spike_replay import SpikeReplay
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
        Pulse while idle: run one inference (from zero neuron state: docs/architecture.md).
    busy : Out(1)
    done : Out(1)
        One-cycle pulse, the cycle after the CLASS record is accepted.
    cycles : Out(CYCLES_WIDTH)
        Cycles from the start pulse to the acceptance of the CLASS record (live while busy).
    error : Out(ErrorBit.WIDTH)
        Sticky since start: bit 0 index >= N_0, bit 1 more than max_input_events in a step.

    Attribute (not a port: a unit beside the core may read it, e.g. hdl/batch.py)
    ---------
    time_steps : Signal(STEP_WIDTH)
        The GLOBAL ``T`` register (the end-of-step markers an inference takes).
    """
    def __init__(self, bundle, hw: HardwareConfig | None = None, memory_init=None):
        hw = HardwareConfig() if hw is None else hw
        self.geom = g = CoreGeometry.from_bundle(bundle, hw)
        self.hw = hw
        self._weights = weight_words(bundle, g)
        self._bank_images = bank_images(bundle, g)
        # Optional replacement power-up contents, as the memories hold them ({"weights": words,
        # "bias": [per bank], "threshold": [per bank]}): bsnn.hdl.bitstream builds with random
        # templates that icebram / ecpbram later replace (hdl/weights_patch.py).
        self._memory_init = dict(memory_init or {})
        self._modes = layer_mode_words(bundle)
        self._globals = global_words(bundle, trace=True)
        self.time_steps = Signal(STEP_WIDTH)
        super().__init__({
            "i_events": In(stream.Signature(InputEventLayout(g.idx_w))),
            "o_results": Out(stream.Signature(ResultLayout(g.idx_w, g.v_width))),
            "i_config": In(stream.Signature(ConfigWriteLayout(g.cfg_addr_w, g.cfg_data_w))),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLES_WIDTH),
            "error": Out(ErrorBit.WIDTH),
        })

    def elaborate(self, platform):
        g = self.geom
        m = Module()
        mi = self._memory_init

        # ---- the units (docs/architecture.md, "Units") ----
        if self.hw.weight_memory == "spram":
            m.submodules.weights = wmem = SPRAMWeightMemory(g)
        else:
            m.submodules.weights = wmem = WeightMemory(
                g, init=mi.get("weights", self._weights), bank_words=self.hw.weight_bank_words)
        m.submodules.config = cfg = ConfigDecoder(g, self._globals)
        m.submodules.input_filter = flt = InputFilter(g)
        m.submodules.synapse = syn = SynapseUnit(g)
        bias, threshold = self._bank_images
        m.submodules.neurons = neu = NeuronArray(g, bias=mi.get("bias", bias),
                                                 threshold=mi.get("threshold", threshold),
                                                 modes=self._modes)
        m.submodules.emitter = emit = ResultEmitter(g)
        m.submodules.readout = rdo = ReadoutUnit(g)
        m.submodules.sequencer = seq = Sequencer(g)
        if g.n_layers > 1:
            m.submodules.replay = replay = SpikeReplay(g)

        # ---- streams: config -> memories; events -> synapse -> neurons -> results ----
        wiring.connect(m, wiring.flipped(self.i_config), cfg.i_config)
        wiring.connect(m, cfg.o_weights, wmem.i_write)
        for u in range(g.neuron_lanes):
            wiring.connect(m, cfg.o_neurons[u], neu.i_write[u])
        wiring.connect(m, wiring.flipped(self.i_events), flt.i_events)
        wiring.connect(m, flt.o_events, seq.i_input)
        wiring.connect(m, seq.o_events, syn.i_event)
        wiring.connect(m, syn.weights, wmem.read)
        wiring.connect(m, syn.o_input, neu.i_cmd)
        wiring.connect(m, neu.o_result, emit.i_results)
        wiring.connect(m, emit.o_cand, rdo.i_cand)
        wiring.connect(m, rdo.o_class, emit.i_class)
        wiring.connect(m, emit.o_results, wiring.flipped(self.o_results))
        if g.n_layers > 1:
            wiring.connect(m, emit.o_groups, replay.i_groups)
            wiring.connect(m, replay.o_events, seq.i_spikes)
            m.d.comb += [replay.enable.eq(seq.replay_enable), replay.load.eq(seq.layer_end)]

        # ---- control: the sequencer's state and counters to the units ----
        m.d.comb += [
            seq.start.eq(self.start), seq.time_steps.eq(cfg.time_steps),
            seq.units_busy.eq(syn.busy),
            seq.layer_done.eq(emit.layer_done), seq.dump_done.eq(emit.dump_done),
            seq.class_done.eq(emit.class_done),
            cfg.idle.eq(seq.idle),
            flt.enable.eq(seq.input_enable), flt.start.eq(seq.accepted),
            flt.clearing.eq(seq.clearing), flt.max_events.eq(cfg.max_input_events),
            syn.layer.eq(seq.layer), syn.clear.eq(seq.clear),
            neu.layer.eq(seq.layer), neu.step.eq(seq.step), neu.clear.eq(seq.clear),
            neu.dump.eq(seq.dumping), neu.dump_start.eq(seq.dump_start),
            emit.mode.eq(seq.emit_mode), emit.step.eq(seq.step), emit.layer.eq(seq.layer),
            emit.hidden.eq(seq.hidden), emit.trace.eq(cfg.trace), emit.clear.eq(seq.clear),
            rdo.rule.eq(cfg.readout_rule), rdo.clear.eq(seq.clear),
            self.busy.eq(seq.busy), self.done.eq(seq.done), self.cycles.eq(seq.cycles),
            self.error.eq(flt.error), self.time_steps.eq(cfg.time_steps),
        ]
        return m
