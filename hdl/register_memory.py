"""A memory of a few words in flip-flops, with the ports of an Amaranth ``Memory``."""
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import Out

__all__ = ["RegisterMemory"]


class RegisterMemory(wiring.Component):
    """``depth`` words of ``shape`` in flip-flops: one write port and one synchronous read port
    transparent to it, the ports and the behaviour of
    ``Memory.read_port(transparent_for=(Memory.write_port(),))``.

    Why: a memory of one or two words that is hundreds of bits wide (the parallel core's
    accumulators: ``P = 400`` lanes, one word per layer) maps to a thousand LUT-RAM cells,
    whose shared addresses and the transparency logic Yosys adds around them (an address
    comparison feeding every bit's bypass multiplexer) made the longest path of the core.
    Here the write enable of a one-word memory goes straight to the flip-flops' enables and
    the read port's bypass select; a deeper one adds one address decode per word.

    Ports
    -----
    write : Out(WritePort.Signature(addr_width, shape))
        ``en``, ``addr``, ``data``: the word at ``addr`` takes ``data`` at the clock edge while
        ``en`` is high. A one-word memory (``depth == 1``) ignores ``addr``.
    read : Out(ReadPort.Signature(addr_width, shape))
        ``en``, ``addr``, ``data``: latency 1; in a cycle with ``en`` high, ``data`` takes the
        word at ``addr`` at the clock edge, or the word being written there in the same cycle
        (transparent); with ``en`` low it holds. One read per cycle.
    """
    def __init__(self, shape, depth: int, addr_width: int):
        if depth < 1 or (1 << addr_width) < depth:
            raise ValueError(f"RegisterMemory: depth {depth} does not fit {addr_width} address bits")
        self._shape, self._depth = shape, depth
        super().__init__({
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=shape)),
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=shape)),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        wr, rd = self.write, self.read
        words = [Signal(self._shape, name=f"word{i}") for i in range(self._depth)]

        def at(port, i):
            # a one-word memory has no address decode (its address is not looked at)
            return 1 if self._depth == 1 else port.addr == i

        for i, word in enumerate(words):
            with m.If(wr.en & at(wr, i)):
                m.d.sync += word.eq(wr.data)
        with m.If(rd.en):
            with m.If(wr.en & (1 if self._depth == 1 else wr.addr == rd.addr)):
                m.d.sync += rd.data.eq(wr.data)
            for i, word in enumerate(words):
                with m.Elif(at(rd, i)):
                    m.d.sync += rd.data.eq(word)
        return m
