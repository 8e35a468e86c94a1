"""Weight memory: one memory of P-bit words holding every layer's binary weights."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry, span
from .layouts import ConfigTarget, ConfigWriteLayout

__all__ = ["ReadPortSignature", "WeightMemory"]


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
        m.submodules.mem = mem = Memory(shape=g.lanes, depth=len(span(g.weight_depth)),
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
