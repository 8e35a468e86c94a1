"""Weight memory: one memory of P-bit words holding every layer's binary weights."""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry, span
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

    Same ports and timing as :class:`WeightMemory`, for ``P <= 16`` and up to four SPRAMs.
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
        # Every bank is selected on every read and its output picked afterwards; only the
        # write enable decodes a bank, from the write address alone (timing: the read address
        # feeds nothing but the SPRAM address pins).
        w_sel = Signal(2)
        m.d.comb += w_sel.eq(w.address[shift + ab:shift + ab + 2])
        last_sel = Signal(2)
        last_slot = Signal(max(1, shift))
        with m.If(self.read.en & ~we):
            m.d.sync += [last_sel.eq(sel), last_slot.eq(slot)]
        # Writes: the word in every slot, the nibble mask enabling only its own slot.
        nibbles = slot_bits // 4
        mask = Signal(4)
        m.d.comb += mask.eq(((1 << nibbles) - 1) << (slot * nibbles))
        data_in = Cat(*([w.data[:g.lanes], Const(0, slot_bits - g.lanes)] * per_word))
        outs = []
        for b in range(self.banks):
            dout = Signal(16, name=f"spram{b}_dout")
            outs.append(dout)
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=Cat(word[:ab], Const(0, 14 - ab)) if ab < 14 else word[:14],
                i_DATAIN=data_in[:16],
                i_MASKWREN=mask, i_WREN=we & (w_sel == b),
                i_CHIPSELECT=we | self.read.en,
                i_CLOCK=ClockSignal(), i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
        read_word = Signal(16)
        with m.Switch(last_sel):
            for b, dout in enumerate(outs):
                with m.Case(b):
                    m.d.comb += read_word.eq(dout)
        picked = read_word.word_select(last_slot, slot_bits) if per_word > 1 else read_word
        m.d.comb += self.read.data.eq(picked[:g.lanes])
        return m
