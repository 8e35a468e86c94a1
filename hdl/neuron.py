"""LIF neuron update unit: the exact neuron arithmetic of docs/semantics.md section 5."""
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import COUNT_WIDTH, LAYER_WIDTH, STEP_WIDTH, CoreGeometry, span
from .layouts import (ConfigTarget, ConfigWriteLayout, LayerModeLayout, NeuronCommandLayout,
                      NeuronResultLayout, NeuronStateLayout, OutputStatsLayout, ResetMode)
from .register_memory import RegisterMemory
from .single_port import SinglePortRAM

__all__ = ["NeuronUnit", "saturate", "leak", "leak_amount"]


def saturate(m, x, width, name):
    """A signed(width) signal holding ``x`` clamped to ``[-2^(width-1), 2^(width-1) - 1]``."""
    hi, lo = (1 << (width - 1)) - 1, -(1 << (width - 1))
    out = Signal(signed(width), name=name)
    m.d.comb += out.eq(Mux(x > hi, Const(hi, signed(width)),
                           Mux(x < lo, Const(lo, signed(width)), x)))
    return out


def leak(m, x, amount, on, name):
    """``x >> amount`` (arithmetic), or 0 unless ``on``."""
    out = Signal(x.shape(), name=name)
    m.d.comb += out.eq(Mux(on, x >> amount, 0))
    return out


def leak_amount(shift, width):
    """The shift the leak shifter applies for a LAYER_MODE shift: ``min(shift, width - 1)``
    (an arithmetic shift of a ``width``-bit value by more gives the same result)."""
    return Mux(shift >= width - 1, width - 1, shift)


class NeuronUnit(wiring.Component):
    """Leaky integrate-and-fire update of one neuron per cycle, plus the neuron memories.

    Memories (none is reset by ``rst`` or cleared): the state ones need no zeroing before an
    inference, because every neuron is updated in step 0 and an update in step 0 reads its old
    state as zeros (a ``dump`` reads the memory as it is).
    state ``{v, c, fired}`` and parameters ``bias``, ``threshold`` for every neuron, layers
    concatenated (address ``neuron_base[layer] + index``); ``{count, first}`` for the output
    layer; one LAYER_MODE register (:class:`LayerModeLayout`) per layer.

    Ports
    -----
    i_cmd : In(stream.Signature(NeuronCommandLayout))
        Update neuron ``index`` of layer ``layer`` with synaptic input ``value`` (state written
        back), or with ``dump`` set, report its stored state unchanged.
    o_result : Out(stream.Signature(NeuronResultLayout))
        One record per command, in order, 3 cycles (10 with the long pipeline) after the command
        is accepted; the unit takes one command per cycle while ``o_result`` is ready (pipeline:
        memory read; leaks and sums; saturation, comparison, reset and write-back; result
        register; one global enable). Two commands for the same neuron must be at least 2 (long
        pipeline: 9) cycles apart; the core updates each neuron once per layer update and waits
        for its last result before the next.
    layer : In(LAYER_WIDTH)
        Layer (0-based) of the commands; set at least 2 cycles before the layer's first command
        (its mode is registered twice: timing) and stable while commands are in flight.
    step : In(16)
        Current time step, recorded as ``first`` of an output neuron's first spike; in step 0 an
        update reads the old state as zeros. Set, like ``layer``, before the layer's first
        command and stable while commands are in flight.
    clear : In(1)
        Pulse: drop any command in flight (the start of an inference).
    i_write : In(stream.Signature(ConfigWriteLayout))
        Always ready. BIAS / THRESHOLD (address < neuron_total) and LAYER_MODE (address <
        L) writes are stored, others ignored. Write only while no command is in flight.

    ``result_register=False`` leaves out the result register: ``o_result`` then comes one cycle
    earlier, combinationally from the write-back stage, for a caller that registers it (the
    :class:`~bsnn.hdl.neuron_array.NeuronArray`'s result queue, whose banks never stall).
    """
    def __init__(self, geom: CoreGeometry, *, bias=(), threshold=(), modes=(), sizes=None,
                 param_sizes=None, result_register=True):
        self._geom = geom
        self._result_register = result_register
        # Layer sizes of this unit's memories: the whole layers, or (one bank of a U-lane
        # neuron array) the groups of each layer, bank u holding neurons j = group * U + u.
        # ``sizes``: the state memory (0 for a pool2d layer); ``param_sizes``: bias and
        # threshold (a conv2d layer's channels).
        self._sizes = tuple(geom.state_groups if sizes is None else sizes)
        self._param_sizes = tuple(geom.param_sizes if param_sizes is None else param_sizes)
        self.bias_init = list(bias)
        self.threshold_init = list(threshold)
        self.mode_init = list(modes) + [0] * (geom.n_layers - len(modes))
        super().__init__({
            "i_cmd": In(stream.Signature(NeuronCommandLayout(geom.idx_w, geom.syn_w))),
            "o_result": Out(stream.Signature(NeuronResultLayout(geom.idx_w, geom.v_width))),
            "layer": In(LAYER_WIDTH),
            "step": In(STEP_WIDTH),
            "clear": In(1),
            "i_write": In(stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))),
        })

    def elaborate(self, platform):
        g = self._geom
        m = Module()
        sizes = self._sizes
        S, NL, L = sum(sizes), sizes[-1], g.n_layers
        bases = [sum(sizes[:l]) for l in range(L)]
        PS = sum(self._param_sizes)
        pbases = [sum(self._param_sizes[:l]) for l in range(L)]
        vw, cw = g.v_width, g.c_width

        # Only the state the build stores (CoreGeometry.state_current / state_fired).
        state_layout = NeuronStateLayout(vw, cw, current=g.state_current, fired=g.state_fired)
        stat_layout = OutputStatsLayout()
        single_port = g.state_memory != "bram"
        # With a single-port state memory a command is taken only in every second cycle
        # (_slots), and the memory read only in the other ones.
        accept_slot, read_slot = (Signal(), Signal()) if single_port else (1, 1)
        self._accept_slot, self._read_slot = accept_slot, read_slot
        if not single_port:
            m.submodules.state = state = Memory(shape=state_layout, depth=len(span(S)), init=[])
        if g.stats_in_flip_flops:
            # One word: flip-flops, not LUT RAM behind a transparency bypass (timing, as the
            # synapse unit's one-word accumulators).
            m.submodules.stat = stat = RegisterMemory(stat_layout, 1, 1)
        else:
            m.submodules.stat = stat = Memory(shape=stat_layout, depth=len(span(NL)), init=[])
        # Bias and threshold are stored as raw bits in whole hex digits (widths rounded up to
        # a multiple of 4; the extra bits are ignored): a bitstream template then has no
        # constant bit column that icebram / ecpbram could match in several places.
        bw4, tw4 = g.stored_bias_width, g.stored_threshold_width
        m.submodules.bias = bias = Memory(shape=unsigned(bw4),
                                          depth=max(len(span(PS)), len(self.bias_init)),
                                          init=[int(x) & ((1 << bw4) - 1) for x in self.bias_init])
        m.submodules.threshold = thr = Memory(shape=unsigned(tw4),
                                              depth=max(len(span(PS)), len(self.threshold_init)),
                                              init=[int(x) & ((1 << tw4) - 1)
                                                    for x in self.threshold_init])
        if single_port:
            st_r, st_w = self._single_port_state(m, state_layout, len(span(S)))
        else:
            st_w = state.write_port()
            st_r = state.read_port(transparent_for=(st_w,))
        if g.stats_in_flip_flops:
            ss_w, ss_r = stat.write, stat.read
        else:
            ss_w = stat.write_port()
            ss_r = stat.read_port(transparent_for=(ss_w,))
        b_w = bias.write_port()
        # Bias and threshold change only through config writes while no command is in flight:
        # their reads need no bypass of a same-cycle write (timing: no soft mux after the RAM).
        b_r = bias.read_port()
        t_w = thr.write_port()
        t_r = thr.read_port()

        mode_layout = LayerModeLayout()
        modes = Array(Signal(mode_layout.size, init=word, name=f"mode{l}", reset_less=True)
                      for l, word in enumerate(self.mode_init))
        mode = Signal(mode_layout)
        m.d.comb += mode.eq(modes[self.layer])

        # ---- config writes ----
        w = self.i_write.payload
        m.d.comb += [
            self.i_write.ready.eq(1),
            b_w.addr.eq(w.address), b_w.data.eq(w.data),
            b_w.en.eq(self.i_write.valid & (w.target == ConfigTarget.BIAS) & (w.address < PS)),
            t_w.addr.eq(w.address), t_w.data.eq(w.data),
            t_w.en.eq(self.i_write.valid & (w.target == ConfigTarget.THRESHOLD) & (w.address < PS)),
        ]
        with m.If(self.i_write.valid & (w.target == ConfigTarget.LAYER_MODE)):
            with m.Switch(w.address):
                for l in range(L):
                    with m.Case(l):
                        m.d.sync += modes[l].eq(w.data[:mode_layout.size])

        # ---- pipeline: R (memory read) -> A (leaks, current, potential sum) -> B (saturate,
        # compare, reset; state written back) -> C (result register). One global enable. ----
        mode_r = Signal(mode_layout)     # the layer's mode, registered (layer is stable long before)
        # The leaks, decoded one cycle after mode_r (timing): whether each shift is non-zero,
        # and the shift clamped to the width - 1 (an arithmetic shift by more gives the same
        # result), so that the shifter selects among `width` values, not 64.
        leak_v_on, leak_c_on = Signal(), Signal()
        leak_v_amt, leak_c_amt = Signal(range(vw)), Signal(range(cw))
        m.d.sync += [mode_r.eq(mode), leak_v_on.eq(mode_r.leak_v != 0),
                     leak_c_on.eq(mode_r.leak_c != 0),
                     leak_v_amt.eq(leak_amount(mode_r.leak_v, vw)),
                     leak_c_amt.eq(leak_amount(mode_r.leak_c, cw))]
        # The layer's memory base and whether it is the output layer, registered like its mode.
        nbase = Signal(span(S))
        pbase = Signal(span(PS))
        is_pool = Signal()      # a pool2d layer: spike = I > 0, no state, no parameters
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    m.d.sync += [nbase.eq(bases[l]), pbase.eq(pbases[l]),
                                 is_pool.eq(g.kinds[l] == "pool2d")]
        is_out = Signal()
        m.d.sync += is_out.eq(self.layer == L - 1)
        step_zero = Signal()    # registered like the layer's mode: the step is stable long before
        m.d.sync += step_zero.eq(self.step == 0)

        cmd_layout = NeuronCommandLayout(g.idx_w, g.syn_w)
        long = g.neuron_pipeline == "long"
        advance = Signal()
        valids = []                     # valid bit of every pipeline register, in order

        def stage(values, registered=True):
            """The pipeline register after a stage: ``values`` (name -> value) delayed by one
            enabled cycle (or passed through when ``registered`` is false)."""
            if not registered:
                return values
            out = {}
            for name, v in values.items():
                r = Signal(v.shape(), name=f"p{len(valids)}_{name}")
                with m.If(advance):
                    m.d.sync += r.eq(v)
                out[name] = r
            ok = Signal(name=f"p{len(valids)}_valid")
            with m.If(advance):
                m.d.sync += ok.eq(values["valid"])
            out["valid"] = ok
            valids.append(ok)
            return out

        rd_addr = Signal(span(S))
        pr_addr = Signal(span(PS))
        # (a pool2d layer reads address 0: it has no state and no parameters)
        m.d.comb += [rd_addr.eq(Mux(is_pool, 0, nbase + self.i_cmd.payload.index)),
                     pr_addr.eq(Mux(is_pool, 0, pbase + self.i_cmd.payload.param))]
        cmd_in = Signal(cmd_layout)
        m.d.comb += cmd_in.eq(self.i_cmd.payload)
        # Stage A (long pipeline only): the command and its memory address registered (timing:
        # the address adder does not sit between the command queue and the block RAMs).
        p = stage({"valid": self.i_cmd.valid & accept_slot if single_port else self.i_cmd.valid,
                   "cmd": cmd_in, "addr": rd_addr,
                   "paddr": pr_addr}, long)
        m.d.comb += [st_r.addr.eq(p["addr"]),
                     st_r.en.eq(advance & read_slot if single_port else advance)]
        for port in (b_r, t_r):
            m.d.comb += [port.addr.eq(p["paddr"]), port.en.eq(advance)]
        m.d.comb += [ss_r.addr.eq(cmd_layout(p["cmd"]).index), ss_r.en.eq(advance)]
        # Stage R: the memories read (their data registers are this stage's register).
        p = stage({"valid": p["valid"], "cmd": p["cmd"], "addr": p["addr"]})
        # Stage R2 (long pipeline only): the memories' read data registered once more (a block
        # RAM's clock-to-output delay is long on the iCE40). An update in step 0 reads the
        # state as zeros (section 5: all state starts at 0), which replaces a clear of the
        # state memories before each inference (S_b cycles).
        fresh = Signal()
        m.d.comb += fresh.eq(step_zero & ~cmd_layout(p["cmd"]).dump)
        old = Signal(state_layout)
        m.d.comb += old.eq(Mux(fresh, 0, st_r.data.as_value()))
        count_old = Signal(COUNT_WIDTH)
        m.d.comb += count_old.eq(Mux(is_out & ~fresh, ss_r.data.count, 0))
        p = stage({**p, "v_old": old.v,
                   "c_old": old.c if g.state_current else Const(0, signed(cw)),
                   # Without stored flags (no fire-once layer) only the output layer's
                   # `fired` is observable (first-spike readout): it is count != 0.
                   "fired": old.fired if g.state_fired else count_old != 0,
                   "b": b_r.data[:g.bias_width].as_signed(), "theta": t_r.data[:g.threshold_width],
                   "count": count_old,
                   "first": Mux(is_out & ~fresh, ss_r.data.first, 0)}, long)
        v_old = p["v_old"]
        c_old = p["c_old"]
        # Stage A0 (long pipeline only): the leaks (shifts by a run-time amount).
        leak_c = leak(m, c_old, leak_c_amt, leak_c_on, "leak_c")
        leak_v = leak(m, v_old, leak_v_amt, leak_v_on, "leak_v")
        p = stage({**p, "leak_c": leak_c, "leak_v": leak_v}, long)
        # Stage A1: the leaked current and the potential's base.
        p = stage({**p, "l_c": p["c_old"] - p["leak_c"],
                   "v_base": p["v_old"] - p["leak_v"] + p["b"]}, long)
        # Stage A2: the current.
        cmd_view = cmd_layout(p["cmd"])
        c_new = saturate(m, p["l_c"] + cmd_view.value, cw, "c_new")
        p = stage({**p, "c_new": c_new}, long)
        # Stage A3: the unsaturated potential.
        cmd_view = cmd_layout(p["cmd"])
        drive = Signal(signed(max(cw, g.syn_w)))
        m.d.comb += drive.eq(Mux(mode_r.current, p["c_new"], cmd_view.value))
        p = stage({**p, "v_sum": p["v_base"] + drive,
                   "c_keep": Mux(mode_r.current, p["c_new"], p["c_old"])})
        # Stage B1: saturation.
        v_sat = saturate(m, p["v_sum"], vw, "v_sat")
        p = stage({**p, "v_sat": v_sat}, long)
        # Stage B2a (long pipeline only): the threshold comparison, the subtraction and the
        # count increment in parallel; B2 then only selects (timing: no carry chain feeds
        # another one before the write-back).
        theta = p["theta"]
        p = stage({**p, "reached": p["v_sat"] >= theta, "v_sub": p["v_sat"] - theta,
                   "count_inc": p["count"] + 1, "count_zero": p["count"] == 0}, long)
        # Stage B2: spike, reset, spike statistics; the state is written back here.
        cmd_view = cmd_layout(p["cmd"])
        spike = Signal()
        m.d.comb += spike.eq(p["reached"] & ~(mode_r.fire_once & p["fired"]))
        if "pool2d" in g.kinds:
            # OR pooling (section 10.4): a window spikes when one of its units did (I > 0).
            with m.If(is_pool):
                m.d.comb += spike.eq(cmd_view.value > 0)
        v_new = Signal(signed(vw))
        with m.If(is_pool):
            m.d.comb += v_new.eq(0)
        with m.Elif(spike & (mode_r.reset == ResetMode.SUBTRACT)):
            m.d.comb += v_new.eq(p["v_sub"])
        with m.Elif(spike & (mode_r.reset == ResetMode.ZERO)):
            m.d.comb += v_new.eq(0)
        with m.Else():
            m.d.comb += v_new.eq(p["v_sat"])
        count_new = Signal(COUNT_WIDTH)
        first_new = Signal(STEP_WIDTH)
        m.d.comb += [
            count_new.eq(Mux(spike, p["count_inc"], p["count"])),
            first_new.eq(Mux(spike & p["count_zero"], self.step, p["first"])),
        ]
        commit = p["valid"] & advance & ~cmd_view.dump & ~is_pool
        m.d.comb += [
            st_w.addr.eq(p["addr"]),
            st_w.data.v.eq(v_new),
            st_w.en.eq(commit),
            ss_w.addr.eq(cmd_view.index),
            ss_w.data.count.eq(count_new),
            ss_w.data.first.eq(first_new),
            ss_w.en.eq(commit & is_out),
        ]
        if g.state_current:
            m.d.comb += st_w.data.c.eq(p["c_keep"])
        if g.state_fired:
            m.d.comb += st_w.data.fired.eq(p["fired"] | spike)
        # Stage C: the result register.
        r = self.o_result.payload
        res = Signal(self.o_result.payload.shape())
        m.d.comb += [res.index.eq(cmd_view.index), res.last.eq(cmd_view.last),
                     res.dump.eq(cmd_view.dump)]
        with m.If(cmd_view.dump):
            m.d.comb += [res.spike.eq(0), res.v.eq(p["v_old"]), res.count.eq(p["count"]),
                         res.first.eq(p["first"]), res.fired.eq(p["fired"])]
        with m.Else():
            m.d.comb += [res.spike.eq(spike), res.v.eq(v_new), res.count.eq(count_new),
                         res.first.eq(first_new), res.fired.eq(p["fired"] | spike)]
        p = stage({"valid": p["valid"], "res": res}, self._result_register)
        m.d.comb += [
            self.o_result.valid.eq(p["valid"]),
            r.eq(p["res"]),
            advance.eq(~p["valid"] | self.o_result.ready),
            self.i_cmd.ready.eq(advance & accept_slot if single_port else advance),
        ]
        with m.If(self.clear):
            m.d.sync += [v.eq(0) for v in valids]
        if single_port:
            self._slots(m, advance, valids, long)

        return m

    def _single_port_state(self, m, layout, depth):
        """The state memory on one port (:class:`~bsnn.hdl.single_port.SinglePortRAM`, SPRAM on
        the iCE40UP5K): read and write ports as a ``Memory``'s, the write-back registered and done
        in the next enabled cycle, which :meth:`_slots` keeps apart from every read."""
        g = self._geom
        m.submodules.state = ram = SinglePortRAM(layout.size, depth, spram=g.state_memory == "spram")
        aw = len(ram.addr)
        st_r = SimpleNamespace(addr=Signal(aw, name="st_r_addr"), en=Signal(name="st_r_en"),
                               data=Signal(layout, name="st_r_data"))
        st_w = SimpleNamespace(addr=Signal(aw, name="st_w_addr"), en=Signal(name="st_w_en"),
                               data=Signal(layout, name="st_w_data"))
        self._wr_pending = Signal()
        wr_addr, wr_data = Signal(aw), Signal(layout.size)
        self._advance_write = Signal()
        m.d.comb += [ram.w_en.eq(self._advance_write), ram.w_data.eq(wr_data),
                     ram.addr.eq(Mux(self._advance_write, wr_addr, st_r.addr)),
                     ram.r_en.eq(st_r.en), st_r.data.eq(ram.r_data)]
        self._write_regs = (st_w, wr_addr, wr_data)
        return st_r, st_w

    def _slots(self, m, advance, valids, long):
        """Every second enabled cycle is a read slot, the others write slots: a command's read
        and the write-back of one ``d`` stages ahead (``d`` = 2 short, 8 long) done a cycle late
        (``d + 1`` odd) never meet. Commands are taken in the cycle of their read (short
        pipeline) or the one before (long: the read comes from the registered command); an
        empty pipeline takes one at once, so a layer of ``G`` groups takes ``2 G - 1`` cycles."""
        st_w, wr_addr, wr_data = self._write_regs
        with m.If(advance):
            m.d.sync += [self._wr_pending.eq(st_w.en), wr_addr.eq(st_w.addr), wr_data.eq(st_w.data)]
        m.d.comb += self._advance_write.eq(advance & self._wr_pending)
        phase = Signal()            # 0: read slot
        accept_phase = int(long)
        empty = Signal()
        m.d.comb += empty.eq(~Cat(*valids).any() & ~self._wr_pending)
        now = Signal()
        m.d.comb += [now.eq(Mux(empty, accept_phase, phase)),
                     self._accept_slot.eq(now == accept_phase),
                     self._read_slot.eq(now == 0)]
        with m.If(advance):
            m.d.sync += phase.eq(~now)
