"""Single-port memories: one read or one write per cycle, as the iCE40UP5K's SB_SPRAM256KA."""
from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .weights import SPRAM_WORDS

__all__ = ["SinglePortRAM", "SinglePortFIFO", "spram_blocks", "MEMORY_KINDS"]

#: Where a memory built on :class:`SinglePortRAM` lives (``HardwareConfig.neuron_state_memory``,
#: ``spike_queue_memory``): ``"single_port"`` an inferred RAM used through one port (block RAM
#: on any device: the cycles of ``"spram"``, for simulation and measurement), ``"spram"`` the
#: iCE40UP5K's SB_SPRAM256KA.
MEMORY_KINDS = ("single_port", "spram")

SPRAM_WIDTH = 16


def spram_blocks(depth: int, width: int) -> int:
    """SB_SPRAM256KA blocks of a :class:`SinglePortRAM` (16-bit words side by side)."""
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_WORDS)


class SinglePortRAM(wiring.Component):
    """``depth`` words of ``width`` bits behind one port: in each cycle one write or one read.

    Ports
    -----
    addr : In(ceil_log2(depth))
    w_en, w_data : In(1), In(width)
        A cycle with ``w_en`` writes ``w_data`` at ``addr`` (a read in the same cycle is not done).
    r_en : In(1)
        A cycle with ``r_en`` and not ``w_en`` reads the word at ``addr``.
    r_data : Out(width)
        The word read, from the next cycle on (latency 1) until the next access: a write makes
        it undefined (SB_SPRAM256KA drives X), so a user takes it before writing again.

    ``spram=True`` builds it from ``SB_SPRAM256KA`` primitives, ``ceil(width / 16)`` side by side
    (``depth <= 16384``); ``spram=False`` from an inferred memory driven the same way (block RAM
    with the same cycles, for simulation and for devices without SPRAM).
    """
    def __init__(self, width: int, depth: int, *, spram: bool):
        if depth < 2 or (spram and depth > SPRAM_WORDS):
            raise ValueError(f"single-port RAM: depth {depth} must be in [2, {SPRAM_WORDS}]")
        self._width, self._depth, self._spram = width, depth, spram
        super().__init__({
            "addr": In(ceil_log2(depth)),
            "w_en": In(1), "w_data": In(width),
            "r_en": In(1), "r_data": Out(width),
        })

    @property
    def blocks(self) -> int:
        """SB_SPRAM256KA primitives used (0 for the inferred memory)."""
        return spram_blocks(self._depth, self._width) if self._spram else 0

    def elaborate(self, platform):
        m = Module()
        if not self._spram:
            m.submodules.mem = mem = Memory(shape=self._width, depth=self._depth, init=[])
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                         rp.addr.eq(self.addr), rp.en.eq(self.r_en & ~self.w_en),
                         self.r_data.eq(rp.data)]
            return m
        n = -(-self._width // SPRAM_WIDTH)
        data_in = Cat(self.w_data, Const(0, n * SPRAM_WIDTH - self._width))
        address = Cat(self.addr, Const(0, 14 - len(self.addr)))
        outs = []
        for i in range(n):
            dout = Signal(SPRAM_WIDTH, name=f"spram{i}_dout")
            outs.append(dout)
            m.submodules[f"spram{i}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address, i_DATAIN=data_in[i * SPRAM_WIDTH:(i + 1) * SPRAM_WIDTH],
                i_MASKWREN=Const(0xF, 4), i_WREN=self.w_en, i_CHIPSELECT=self.w_en | self.r_en,
                i_CLOCK=ClockSignal(), i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
        m.d.comb += self.r_data.eq(Cat(*outs)[:self._width])
        return m


class SinglePortFIFO(wiring.Component):
    """A first-in first-out queue of ``depth`` entries on a :class:`SinglePortRAM`.

    Writes take the port whenever they come (the writer never waits); the head entry is read in
    a cycle without a write and is then offered straight from the RAM's output, which a write
    destroys: a write makes the head invalid and it is read again in the next write-free cycle.
    So an entry written in cycle ``t`` is offered from ``t + 2`` at the earliest, and while no
    writes come the queue gives one entry per cycle (as ``amaranth.lib.fifo.SyncFIFOBuffered``,
    whose cycles the spike queue keeps: its writes, during a layer's update, and its reads,
    during the next layer's replay, never meet).

    Ports
    -----
    w_stream : In(stream.Signature(width))
        Ready while the queue has room (the spike queue is sized never to fill).
    r_stream : Out(stream.Signature(width))
        The oldest entry.
    """
    def __init__(self, width: int, depth: int, *, spram: bool):
        self._width, self._spram = width, spram
        self._aw = max(1, ceil_log2(depth))
        self.depth = 1 << self._aw          # pointers wrap at a power of two
        super().__init__({
            "w_stream": In(stream.Signature(width)),
            "r_stream": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = SinglePortRAM(self._width, self.depth, spram=self._spram)
        w_ptr, head = Signal(self._aw), Signal(self._aw)     # next write; oldest entry
        level = Signal(range(self.depth + 1))                 # entries stored, the head's included
        head_valid = Signal()                                 # ram.r_data holds the head
        write, take, read = Signal(), Signal(), Signal()
        head_next = Signal(self._aw)
        m.d.comb += [
            self.w_stream.ready.eq(level != self.depth),
            write.eq(self.w_stream.valid & self.w_stream.ready),
            self.r_stream.valid.eq(head_valid),
            self.r_stream.payload.eq(ram.r_data),
            take.eq(head_valid & self.r_stream.ready),
            head_next.eq(head + take),
            # the next head is read in a write-free cycle once the current one is taken
            read.eq(~write & (level - take != 0) & (~head_valid | take)),
            ram.addr.eq(Mux(write, w_ptr, head_next)),
            ram.w_en.eq(write), ram.w_data.eq(self.w_stream.payload), ram.r_en.eq(read),
        ]
        m.d.sync += [level.eq(level + write - take), head.eq(head_next),
                     head_valid.eq(~write & (read | (head_valid & ~take)))]
        with m.If(write):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        return m
