"""Config decoder: the core's parameter-write port, fanned out to the memories and registers."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import STEP_WIDTH, CoreGeometry, span
from .layouts import ConfigTarget, ConfigWriteLayout, GlobalAddress

__all__ = ["ConfigDecoder"]


class ConfigDecoder(wiring.Component):
    """Takes parameter writes while the core is idle and routes them to the weight memory, the
    neuron banks and the GLOBAL registers (docs/architecture.md, "Config port").

    A write passes one register stage (timing: the address decode starts from flip-flops);
    BIAS / THRESHOLD address ``neuron_base[l] + j`` is then decoded into bank ``j % U``, bank
    address ``bank_base[l] + j // U``, and LAYER_MODE writes go to every bank, through a second
    register stage (timing: the decode does not run into the memories' write ports).

    Parameters
    ----------
    geom : CoreGeometry
    globals_init : dict
        Power-up values of the GLOBAL registers by :class:`GlobalAddress` (``TIME_STEPS``,
        ``READOUT``, ``MAX_INPUT_EVENTS``); the trace bit starts at 1.

    Ports
    -----
    i_config : In(stream.Signature(ConfigWriteLayout))
        Ready exactly while ``idle``; one write per cycle.
    idle : In(1)
        The core is idle (the sequencer's ``idle``).
    o_weights : Out(stream.Signature(ConfigWriteLayout))
        Every write, one cycle after its transfer (the weight memory keeps its WEIGHTS ones);
        ``ready`` is not looked at (the weight memory is always ready).
    o_neurons : Out(stream.Signature(ConfigWriteLayout)).array(U)
        Two cycles after the transfer: to bank ``u``, every write whose address is a neuron
        ``j`` with ``j % U == u``, at its bank-local address (whatever the target: the bank
        keeps the BIAS and THRESHOLD ones), and every LAYER_MODE write; ``ready`` is not looked
        at (the banks are always ready).
    time_steps, readout_rule, max_input_events, trace : Out
        The GLOBAL registers, written one cycle after the transfer; like the memories they keep
        their contents across ``rst`` (configuration, not state). The sequencer and the input
        filter first read ``time_steps`` and ``max_input_events`` in the CLEAR state, so a
        ``start`` right after the last write is safe.

    Latency 1 cycle (weights, GLOBAL) or 2 cycles (neuron banks); throughput one write per cycle.
    """
    def __init__(self, geom: CoreGeometry, globals_init: dict):
        self._geom = geom
        self._globals_init = dict(globals_init)
        write = stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))
        super().__init__({
            "i_config": In(write),
            "idle": In(1),
            "o_weights": Out(write),
            "o_neurons": Out(write).array(geom.neuron_lanes),
            "time_steps": Out(STEP_WIDTH),
            "readout_rule": Out(2),
            "max_input_events": Out(geom.cfg_data_w),
            "trace": Out(1),
        })

    def elaborate(self, platform):
        g = self._geom
        U = g.neuron_lanes
        m = Module()

        # ---- GLOBAL registers (configuration: like the memories, kept across rst) ----
        gl = self._globals_init
        time_steps = Signal(STEP_WIDTH, init=gl[GlobalAddress.TIME_STEPS], reset_less=True)
        rule = Signal(2, init=gl[GlobalAddress.READOUT], reset_less=True)
        max_ev = Signal(g.cfg_data_w, init=gl[GlobalAddress.MAX_INPUT_EVENTS], reset_less=True)
        trace_en = Signal(init=1, reset_less=True)
        m.d.comb += [self.time_steps.eq(time_steps), self.readout_rule.eq(rule),
                     self.max_input_events.eq(max_ev), self.trace.eq(trace_en)]

        cfg = self.i_config.payload
        m.d.comb += self.i_config.ready.eq(self.idle)
        # Memory writes go through one register stage (timing: the address decode below starts
        # from flip-flops); they land one cycle after the transfer.
        cfg_v = Signal()
        cfg_r = Signal.like(cfg)
        m.d.sync += [cfg_v.eq(self.i_config.valid & self.idle), cfg_r.eq(cfg)]
        m.d.comb += [self.o_weights.valid.eq(cfg_v), self.o_weights.payload.eq(cfg_r)]

        # BIAS / THRESHOLD address neuron_base[l] + j goes to bank j % U, address
        # bank_base[l] + j // U; LAYER_MODE writes go to every bank.
        log_u = U.bit_length() - 1
        n_sel = Signal(span(U))
        n_local = Signal(g.cfg_addr_w)
        n_in_range = Signal()
        first = next(l for l in range(g.n_layers) if g.param_sizes[l])
        for l in range(g.n_layers):
            # Layers are tried in order, so the lower bound is implied by the earlier tests.
            if not g.param_sizes[l]:
                continue        # a pool2d layer has no parameters
            cond = cfg_r.address < g.neuron_base[l] + g.param_sizes[l]
            with (m.If(cond) if l == first else m.Elif(cond)):
                j = Signal(g.cfg_addr_w, name=f"cfg_j{l}")
                m.d.comb += [j.eq(cfg_r.address - g.neuron_base[l]), n_in_range.eq(1),
                             n_local.eq(g.bank_base[l] + (j >> log_u))]
                if U > 1:
                    m.d.comb += n_sel.eq(j[:log_u])
        # The decoded bank writes are registered once more; they land two cycles after the
        # transfer.
        for u in range(U):
            mine = (cfg_r.target == ConfigTarget.LAYER_MODE) | (n_in_range & (n_sel == u))
            bw = self.o_neurons[u]
            m.d.sync += [bw.valid.eq(cfg_v & mine),
                         bw.payload.target.eq(cfg_r.target),
                         bw.payload.data.eq(cfg_r.data),
                         bw.payload.address.eq(
                             Mux(cfg_r.target == ConfigTarget.LAYER_MODE, cfg_r.address, n_local))]

        # GLOBAL registers are written from the same register stage (one cycle after the
        # transfer).
        with m.If(cfg_v & (cfg_r.target == ConfigTarget.GLOBAL)):
            with m.Switch(cfg_r.address):
                with m.Case(GlobalAddress.TIME_STEPS):
                    m.d.sync += time_steps.eq(cfg_r.data)
                with m.Case(GlobalAddress.READOUT):
                    m.d.sync += rule.eq(cfg_r.data)
                with m.Case(GlobalAddress.MAX_INPUT_EVENTS):
                    m.d.sync += max_ev.eq(cfg_r.data)
                with m.Case(GlobalAddress.TRACE):
                    m.d.sync += trace_en.eq(cfg_r.data[0])
        return m
