"""The accumulator memory split by fan-in: the low bits of every lane in every word, the high
bits only where a layer's fan-in needs them."""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from .config import span
from .layouts import AccumulatorLayout

__all__ = ["SplitAccumulatorMemory"]


class SplitAccumulatorMemory(wiring.Component):
    """``depth`` words of ``lanes`` signed ``width``-bit lanes (:class:`AccumulatorLayout`),
    stored as two RAMs: the low ``low_width`` bits of every lane in all ``depth`` words, the
    other ``width - low_width`` bits only in words ``0 .. high_depth - 1``. A word above that
    reads as its low bits sign-extended, so what is written there must fit ``low_width`` bits
    (:attr:`CoreGeometry.accumulator_split` chooses the split from the layers' fan-in bounds).

    Why: the layer with the most accumulator words (the first convolution's positions) has a
    small fan-in and the layer with the largest fan-in (the dense one after the maps) few words;
    one memory as wide as the largest fan-in and as deep as the most words stores bits no layer
    uses (on the iCE40UP5K, 26 block RAMs where 21 + 1 hold the same).

    Ports
    -----
    write : Out(WritePort.Signature(addr_width, AccumulatorLayout(width, lanes)))
    read : Out(ReadPort.Signature(addr_width, AccumulatorLayout(width, lanes)))
        As a ``Memory``'s write port and a read port transparent to it (latency 1; ``data``
        holds while ``en`` is low).
    """
    def __init__(self, width: int, lanes: int, depth: int, low_width: int, high_depth: int):
        if not (1 <= low_width < width and 1 <= high_depth < depth):
            raise ValueError(f"split accumulators: low_width {low_width} of {width}, high_depth "
                             f"{high_depth} of {depth}")
        self._width, self._lanes, self._depth = width, lanes, depth
        self._low, self._high_depth = low_width, high_depth
        layout = AccumulatorLayout(width, lanes)
        addr_width = ceil_log2(len(span(depth)))     # as a Memory of this depth
        super().__init__({
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=layout)),
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=layout)),
        })

    def elaborate(self, platform):
        m = Module()
        P, low, high = self._lanes, self._low, self._width - self._low
        m.submodules.low = low_mem = Memory(shape=P * low, depth=self._depth, init=[])
        m.submodules.high = high_mem = Memory(shape=P * high, depth=self._high_depth, init=[])
        lw, hw = low_mem.write_port(), high_mem.write_port()
        lr, hr = low_mem.read_port(transparent_for=(lw,)), high_mem.read_port(transparent_for=(hw,))
        wr, rd = self.write, self.read
        in_high_w = Signal()
        m.d.comb += [in_high_w.eq(wr.addr < self._high_depth),
                     lw.addr.eq(wr.addr), hw.addr.eq(wr.addr), lw.en.eq(wr.en),
                     hw.en.eq(wr.en & in_high_w),
                     lw.data.eq(Cat(wr.data[u][:low] for u in range(P))),
                     hw.data.eq(Cat(wr.data[u][low:] for u in range(P))),
                     lr.addr.eq(rd.addr), hr.addr.eq(rd.addr), lr.en.eq(rd.en), hr.en.eq(rd.en)]
        in_high_r = Signal()        # the word read has high bits (registered with the read)
        with m.If(rd.en):
            m.d.sync += in_high_r.eq(rd.addr < self._high_depth)
        for u in range(P):
            lo_bits = lr.data[u * low:(u + 1) * low]
            hi_bits = hr.data[u * high:(u + 1) * high]
            sign = lo_bits[low - 1].replicate(high)
            m.d.comb += rd.data[u].eq(Cat(lo_bits, Mux(in_high_r, hi_bits, sign)).as_signed())
        return m
