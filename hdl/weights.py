"""Weight memory: one memory of P-bit words holding every layer's binary weights."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry, span
from .layouts import ConfigTarget, ConfigWriteLayout

__all__ = ["ReadPortSignature", "WeightMemory", "SPRAMWeightMemory", "SPRAM_WORDS"]

#: Words of one iCE40UP5K SB_SPRAM256KA (16 bits each); the UP5K has four.
SPRAM_WORDS = 16384
SPRAM_COUNT = 4


class ReadPortSignature(wiring.Signature):
    """A synchronous memory read port, seen from the reader.

    Members
    -------
    addr : Out(addr_w)
    en : Out(1)
        When high, ``data`` shows the word at ``addr`` in the next cycle; when low it holds.
    data : In(data_w)
    """
    def __init__(self, addr_w, data_w):
        super().__init__({"addr": Out(addr_w), "en": Out(1), "data": In(data_w)})


class WeightMemory(wiring.Component):
    """Weight memory: ``geom.weight_depth`` words of ``P`` bits.

    Layer ``l``, source ``i``, chunk ``k`` is at ``weight_base[l] + i * chunks[l] + k``; bit ``m``
    is the weight (1 = +1) to neuron ``k * P + m`` of layer ``l``.

    Parameters
    ----------
    geom : CoreGeometry
    init : list of int
        Initial contents (the bundle's packed weights), at most ``weight_depth`` words.

    Ports
    -----
    read : In(ReadPortSignature(weight_addr_w, P))
        Synchronous read, latency 1 cycle, one word per cycle.
    i_write : In(stream.Signature(ConfigWriteLayout))
        Always ready. A write with ``target == WEIGHTS`` and ``address < weight_depth`` stores the
        low ``P`` bits of ``data`` (visible to reads one cycle later); other writes are ignored.
    """
    def __init__(self, geom: CoreGeometry, init=()):
        self._geom = geom
        self.init = list(init)
        super().__init__({
            "read": In(ReadPortSignature(geom.weight_addr_w, geom.lanes)),
            "i_write": In(stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))),
        })

    def elaborate(self, platform):
        g = self._geom
        m = Module()
        # An init longer than the depth (a bitstream template filling whole block RAMs) makes
        # the memory that deep; the words beyond weight_depth are never addressed.
        m.submodules.mem = mem = Memory(shape=g.lanes,
                                        depth=max(len(span(g.weight_depth)), len(self.init)),
                                        init=self.init)
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,))
        w = self.i_write.payload
        m.d.comb += [
            rp.addr.eq(self.read.addr),
            rp.en.eq(self.read.en),
            self.read.data.eq(rp.data),
            self.i_write.ready.eq(1),
            wp.addr.eq(w.address),
            wp.data.eq(w.data),
            wp.en.eq(self.i_write.valid & (w.target == ConfigTarget.WEIGHTS)
                     & (w.address < g.weight_depth)),
        ]
        return m


class SPRAMWeightMemory(wiring.Component):
    """Weight memory in iCE40UP5K single-port RAM (``SB_SPRAM256KA``, 16K x 16 bits each).

    Same ports and timing as :class:`WeightMemory`, for ``P <= 16`` and up to four SPRAMs
    (65,536 words). SPRAM has no initial contents: the weights must be written through
    ``i_write`` after configuration (the host link does that). A write and a read in the same
    cycle (the core writes only while idle, when reads are don't-care) perform the write.
    """
    def __init__(self, geom: CoreGeometry):
        if geom.lanes > 16:
            raise ValueError(f"SPRAM weight memory: lanes {geom.lanes} > 16")
        self.banks = -(-geom.weight_depth // SPRAM_WORDS)
        if self.banks > SPRAM_COUNT:
            raise ValueError(f"SPRAM weight memory: {geom.weight_depth} words of {geom.lanes} bits "
                             f"need {self.banks} SPRAMs, the iCE40UP5K has {SPRAM_COUNT}")
        self._geom = geom
        super().__init__({
            "read": In(ReadPortSignature(geom.weight_addr_w, geom.lanes)),
            "i_write": In(stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))),
        })

    def elaborate(self, platform):
        from amaranth.hdl import ClockSignal, Const, Instance, Mux, Signal
        g = self._geom
        m = Module()
        w = self.i_write.payload
        we = Signal()
        addr = Signal(max(16, g.weight_addr_w))
        m.d.comb += [
            self.i_write.ready.eq(1),
            we.eq(self.i_write.valid & (w.target == ConfigTarget.WEIGHTS)
                  & (w.address < g.weight_depth)),
            addr.eq(Mux(we, w.address, self.read.addr)),
        ]
        sel = addr[14:16]
        last_sel = Signal(2)
        with m.If(self.read.en & ~we):
            m.d.sync += last_sel.eq(sel)
        outs = []
        for b in range(self.banks):
            dout = Signal(16, name=f"spram{b}_dout")
            outs.append(dout)
            mine = sel == b
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr[:14], i_DATAIN=w.data[:16],
                i_MASKWREN=Const(0b1111, 4), i_WREN=we & mine,
                i_CHIPSELECT=(we | self.read.en) & mine,
                i_CLOCK=ClockSignal(), i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
        with m.Switch(last_sel):
            for b, dout in enumerate(outs):
                with m.Case(b):
                    m.d.comb += self.read.data.eq(dout[:g.lanes])
        return m
