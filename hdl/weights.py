"""Weight memory: one memory of P-bit words holding every layer's binary weights."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry
from .layouts import ConfigTarget, ConfigWriteLayout

__all__ = ["ReadPortSignature", "WeightMemory", "SPRAMWeightMemory", "SPRAM_WORDS", "SPRAM_COUNT",
           "spram_packing", "spram_banks"]

#: Words of one iCE40UP5K SB_SPRAM256KA (16 bits each); the UP5K has four.
SPRAM_WORDS = 16384
SPRAM_COUNT = 4


class ReadPortSignature(wiring.Signature):
    """A synchronous memory read port, seen from the reader.

    Members
    -------
    addr : Out(addr_w)
    en : Out(1)
        When high, ``data`` shows the word at ``addr`` three cycles later (read, a register,
        a multiplexer and an output register); when low the read stages hold.
    data : In(data_w)
    """
    def __init__(self, addr_w, data_w):
        super().__init__({"addr": Out(addr_w), "en": Out(1), "data": In(data_w)})


class WeightMemory(wiring.Component):
    """Weight memory: ``geom.weight_depth`` words of ``P`` bits.

    Layer ``l``, source ``i``, chunk ``k`` is at ``weight_base[l] + i * chunks[l] + k``; bit ``m``
    is the weight (1 = +1) to neuron ``k * P + m`` of layer ``l``.

    The words are kept in banks of ``bank_words`` consecutive addresses (one bank when
    ``bank_words`` is 0), each a memory of its own whose read word is registered; the registered
    words are then multiplexed into the output register (timing: a large memory's many block RAMs do not meet in one
    multiplexer tree before a register). The banks hold consecutive slices of one image, so the
    bitstream patching sees the same contents as with one memory.

    Parameters
    ----------
    geom : CoreGeometry
    init : list of int
        Initial contents (the bundle's packed weights), at most ``weight_depth`` words.
    bank_words : int
        Words per bank (0: a single bank).

    Ports
    -----
    read : In(ReadPortSignature(weight_addr_w, P))
        Synchronous read, latency 3 cycles, one word per cycle.
    i_write : In(stream.Signature(ConfigWriteLayout))
        Always ready. A write with ``target == WEIGHTS`` and ``address < weight_depth`` stores the
        low ``P`` bits of ``data`` (visible to reads issued one cycle later); other writes are
        ignored.
    """
    def __init__(self, geom: CoreGeometry, init=(), bank_words: int = 0):
        self._geom = geom
        self.init = list(init)
        depth = max(geom.weight_depth, len(self.init), 2)
        if bank_words and (bank_words & (bank_words - 1) or bank_words < 2):
            raise ValueError(f"weight memory: bank_words {bank_words} must be 0 or a power of two >= 2")
        self.bank_words = bank_words if bank_words and bank_words < depth else 0
        self.depth = depth
        super().__init__({
            "read": In(ReadPortSignature(geom.weight_addr_w, geom.lanes)),
            "i_write": In(stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))),
        })

    def elaborate(self, platform):
        from amaranth.hdl import Signal
        g = self._geom
        m = Module()
        w = self.i_write.payload
        we = Signal()
        m.d.comb += [
            self.i_write.ready.eq(1),
            we.eq(self.i_write.valid & (w.target == ConfigTarget.WEIGHTS)
                  & (w.address < g.weight_depth)),
        ]
        bw = self.bank_words or self.depth
        n_banks = -(-self.depth // bw)
        ab = max(1, (bw - 1).bit_length())          # address bits inside a bank
        sel1 = Signal(range(max(2, n_banks)))      # bank of the read, one and two cycles late
        sel2 = Signal.like(sel1)
        with m.If(self.read.en):
            m.d.sync += [sel1.eq(self.read.addr >> ab if n_banks > 1 else 0), sel2.eq(sel1)]
        picked = Signal(g.lanes)
        words = []
        for b in range(n_banks):
            # An init longer than the depth (a bitstream template filling whole block RAMs)
            # makes the memory that deep; the words beyond weight_depth are never addressed.
            init = self.init[b * bw:(b + 1) * bw]
            mem = Memory(shape=g.lanes, depth=max(2, min(bw, self.depth - b * bw), len(init)),
                         init=init)
            m.submodules[f"mem{b}" if n_banks > 1 else "mem"] = mem
            wp = mem.write_port()
            # Written only while the core is idle: no bypass of a same-cycle write (timing: the
            # block RAM's output goes straight to its register).
            rp = mem.read_port()
            mine = (w.address >> ab) == b if n_banks > 1 else 1
            word = Signal(g.lanes, name=f"bank{b}_word")
            m.d.comb += [
                rp.addr.eq(self.read.addr[:ab]), rp.en.eq(self.read.en),
                wp.addr.eq(w.address[:ab]), wp.data.eq(w.data), wp.en.eq(we & mine),
            ]
            with m.If(self.read.en):
                m.d.sync += word.eq(rp.data)
            words.append(word)
        with m.Switch(sel2):
            for b, word in enumerate(words):
                with m.Case(b):
                    m.d.comb += picked.eq(word)
        with m.If(self.read.en):
            m.d.sync += self.read.data.eq(picked)
        return m


def spram_packing(lanes: int) -> tuple:
    """``(slot_bits, per_word)``: a ``lanes``-bit weight word takes a slot of whole nibbles (the
    SPRAM's write mask has nibble granularity) and ``per_word`` slots share one 16-bit word."""
    slot = -(-lanes // 4) * 4
    return slot, 16 // slot


def spram_banks(geom: CoreGeometry) -> int:
    """SB_SPRAM256KA blocks needed for the weights of ``geom`` (packed, see :func:`spram_packing`)."""
    _, per_word = spram_packing(geom.lanes)
    return -(-(-(-geom.weight_depth // per_word)) // SPRAM_WORDS)


class SPRAMWeightMemory(wiring.Component):
    """Weight memory in iCE40UP5K single-port RAM (``SB_SPRAM256KA``, 16K x 16 bits each).

    Same ports and timing (latency 3) as :class:`WeightMemory`, for ``P <= 16`` and up to four
    SPRAMs.
    Narrow words are packed: a ``P``-bit word takes ``ceil(P / 4)`` nibbles, so two words of
    ``P <= 8`` (four of ``P <= 4``) share a 16-bit SPRAM word, written with the nibble mask and
    selected after the read (the four SPRAMs hold 131,072 words of 8 bits). SPRAM has no initial
    contents: the weights must be written through ``i_write`` after configuration (the host
    link does that). A write and a read in the same cycle (the core writes only while idle,
    when reads are don't-care) perform the write.
    """
    def __init__(self, geom: CoreGeometry, bank_words: int = SPRAM_WORDS):
        # bank_words < SPRAM_WORDS (a power of two) uses only that many words of each SPRAM:
        # for tests that cross banks with a small network.
        if geom.lanes > 16:
            raise ValueError(f"SPRAM weight memory: lanes {geom.lanes} > 16")
        if bank_words & (bank_words - 1) or not 2 <= bank_words <= SPRAM_WORDS:
            raise ValueError(f"SPRAM weight memory: bank_words {bank_words} must be a power of "
                             f"two in [2, {SPRAM_WORDS}]")
        self.bank_words = bank_words
        self.slot_bits, self.per_word = spram_packing(geom.lanes)
        self.banks = -(-(-(-geom.weight_depth // self.per_word)) // bank_words)
        if self.banks > SPRAM_COUNT:
            raise ValueError(f"SPRAM weight memory: {geom.weight_depth} words of {geom.lanes} bits "
                             f"need {self.banks} SPRAMs, the iCE40UP5K has {SPRAM_COUNT}")
        self._geom = geom
        super().__init__({
            "read": In(ReadPortSignature(geom.weight_addr_w, geom.lanes)),
            "i_write": In(stream.Signature(ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w))),
        })

    def elaborate(self, platform):
        from amaranth.hdl import Cat, ClockSignal, Const, Instance, Mux, Signal
        g = self._geom
        slot_bits, per_word = self.slot_bits, self.per_word
        shift = per_word.bit_length() - 1
        m = Module()
        w = self.i_write.payload
        we = Signal()
        ab = self.bank_words.bit_length() - 1      # address bits inside one SPRAM
        addr = Signal(max(ab + 2 + shift, g.weight_addr_w))
        m.d.comb += [
            self.i_write.ready.eq(1),
            we.eq(self.i_write.valid & (w.target == ConfigTarget.WEIGHTS)
                  & (w.address < g.weight_depth)),
            addr.eq(Mux(we, w.address, self.read.addr)),
        ]
        word = addr[shift:]                 # the 16-bit SPRAM word (address in a bank + bank)
        slot = addr[:shift] if shift else Const(0, 1)
        sel = word[ab:ab + 2]
        # Writes: the word in every slot, the nibble mask enabling only its own slot.
        nibbles = slot_bits // 4
        data_in = Cat(*([w.data[:g.lanes], Const(0, slot_bits - g.lanes)] * per_word))
        # The SPRAMs' inputs are registered first (timing: the SPRAMs sit at the die's corners,
        # so the long wires start at flip-flops): stage 1 registers address and write, the
        # SPRAMs read in stage 2, and their outputs are picked by bank and slot into the
        # output register (stage 3; latency 3 as WeightMemory). Every bank is read on every
        # read; only the write enable decodes a bank, from the write address.
        word_r = Signal(len(word))
        we_r = Signal()
        w_sel_r = Signal(2)
        data_r = Signal(16)
        mask_r = Signal(4)
        with m.If(self.read.en | we):
            m.d.sync += word_r.eq(word)
        m.d.sync += [we_r.eq(we), w_sel_r.eq(w.address[shift + ab:shift + ab + 2]),
                     data_r.eq(data_in[:16]), mask_r.eq(((1 << nibbles) - 1) << (slot * nibbles))]
        sel1, sel2 = Signal(2), Signal(2)
        slot1, slot2 = Signal(max(1, shift)), Signal(max(1, shift))
        with m.If(self.read.en & ~we):
            m.d.sync += [sel1.eq(sel), slot1.eq(slot)]
        with m.If(self.read.en):
            m.d.sync += [sel2.eq(sel1), slot2.eq(slot1)]
        outs = []
        for b in range(self.banks):
            dout = Signal(16, name=f"spram{b}_dout")
            outs.append(dout)
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=Cat(word_r[:ab], Const(0, 14 - ab)) if ab < 14 else word_r[:14],
                i_DATAIN=data_r, i_MASKWREN=mask_r, i_WREN=we_r & (w_sel_r == b),
                i_CHIPSELECT=we_r | self.read.en,
                i_CLOCK=ClockSignal(), i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
        read_word = Signal(16)
        with m.Switch(sel2):
            for b, dout in enumerate(outs):
                with m.Case(b):
                    m.d.comb += read_word.eq(dout)
        picked = read_word.word_select(slot2, slot_bits) if per_word > 1 else read_word
        with m.If(self.read.en):
            m.d.sync += self.read.data.eq(picked[:g.lanes])
        return m
