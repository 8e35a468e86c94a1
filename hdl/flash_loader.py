"""Flash loader: copies the model's flash image (hdl/flash_image.py) into the core at power-up."""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry
from .flash_image import (COUNT_BYTES, FORMAT_VERSION, HEADER_BYTES, MAGIC, key_hash,
                          max_payload_bytes)
from .hostlink import frame_sizes
from .layouts import ConfigWriteLayout
from .spi_master import SPIMaster

__all__ = ["FlashLoader", "BootStatus", "CMD_RELEASE_POWER_DOWN", "CMD_READ", "T_RES1_S"]

#: SPI flash commands (W25Q128JV, and the common 25-series flashes of the ECP5 boards).
CMD_RELEASE_POWER_DOWN = 0xAB
CMD_READ = 0x03
#: Release from power-down to the next command (W25Q128JV datasheet, tRES1 max 3 us).
T_RES1_S = 3e-6

POLY = 0xEDB88320     # CRC-32 (reflected), as zlib.crc32


class BootStatus(enum.IntEnum, shape=4):
    """The loader's result (``FlashLoader.status``; the host link's BOOT reply)."""
    LOADING = 0       # reading the flash
    OK = 1            # the image was loaded into the core
    NO_IMAGE = 2      # no image magic at the offset (an erased flash reads 0xFF)
    BAD_FORMAT = 3    # another format version, or a payload length out of range
    BAD_KEY = 4       # an image of another build (nothing was written)
    BAD_CHECKSUM = 5  # the payload's CRC-32 differs from the header's (nothing was written)
    NO_LOADER = 7     # a board top without a flash loader


def crc32_byte(crc, byte):
    """``crc`` (32-bit, reflected, not inverted) after ``byte``: an expression (8 unrolled
    steps, a flat XOR network after synthesis)."""
    c = crc ^ byte
    for _ in range(8):
        c = Mux(c[0], (c >> 1) ^ POLY, c >> 1)
    return c


class FlashLoader(wiring.Component):
    """After reset: wakes the SPI flash (0xAB, then tRES1), reads the image header at
    ``offset`` (READ 0x03, 24-bit address), refuses an image of another magic, format version,
    build key or length before writing anything; then reads the payload once to check its
    CRC-32, and only if it matches a second time, decoding the runs into ``o_config`` writes
    (checking the CRC again: a read that differs the second time ends in BAD_CHECKSUM).

    Parameters
    ----------
    geom : CoreGeometry
        The build (field sizes, build key).
    offset : int
        Byte address of the image in the flash (24 bits).
    half : int
        Clock cycles per half period of SCK (hdl/spi_master.py).
    wake_cycles : int
        Clock cycles from the release-from-power-down command to the first read (tRES1).

    Ports
    -----
    sck, cs, copi : Out(1)
    cipo : In(1)
        The flash's pins (``cs`` active high; the board inverts it to CS#).
    o_config : Out(stream.Signature(ConfigWriteLayout))
        Config writes into the core (its ``i_config``); any backpressure just pauses the flash.
    loading : Out(1)
        High from reset until ``status`` leaves LOADING: the host link must not write config.
    status : Out(BootStatus)

    Throughput: one flash byte per ``16 * half + 3`` cycles or so; an image of ``n`` payload
    bytes takes about ``2 * (n + 24) * (16 * half + 3)`` cycles plus ``wake_cycles``.
    """
    def __init__(self, geom: CoreGeometry, offset: int, half: int, wake_cycles: int):
        if not 0 <= offset < (1 << 24) - HEADER_BYTES:
            raise ValueError(f"flash loader: offset {offset:#x} is not a 24-bit address")
        self.geom = g = geom
        self.offset = offset
        self.half = half
        self.wake_cycles = max(1, int(wake_cycles))
        self.key = key_hash(geom)
        self.max_length = max_payload_bytes(geom)
        self.sizes = frame_sizes(geom)
        super().__init__({
            "sck": Out(1), "cs": Out(1), "copi": Out(1), "cipo": In(1),
            "o_config": Out(stream.Signature(ConfigWriteLayout(g.cfg_addr_w, g.cfg_data_w))),
            "loading": Out(1),
            "status": Out(BootStatus),
        })

    def elaborate(self, platform):
        A, D = self.sizes["A"], self.sizes["D"]
        m = Module()
        m.submodules.spi = spi = SPIMaster(self.half)
        m.d.comb += [self.sck.eq(spi.sck), self.cs.eq(spi.cs), self.copi.eq(spi.copi),
                     spi.cipo.eq(self.cipo)]
        rx = spi.o_rx

        # The command bytes of a read: opcode and 24-bit address, most significant first.
        cmd = Signal(32)
        cmd_left = Signal(range(5))
        hdr = Signal(8 * HEADER_BYTES)           # header bytes, shifted in from the top
        hdr_left = Signal(range(HEADER_BYTES + 1))
        length = Signal(32)
        left = Signal(32)                        # payload bytes still to read
        crc = Signal(32, init=0xFFFFFFFF)
        second = Signal()                        # the loading pass (else the checking pass)
        wait = Signal(range(self.wake_cycles + 1))

        # Run decoder: fields shift in from the top, like the host link's arguments.
        field_bytes = max(1 + A + COUNT_BYTES, D)
        field = Signal(8 * field_bytes)
        field_left = Signal(range(field_bytes + 1))
        in_data = Signal()                        # receiving data words (else a run header)
        target = Signal(8)
        address = Signal(8 * A)
        count = Signal(8 * COUNT_BYTES)
        out = self.o_config
        got = Cat(field[8:], rx.payload)         # the field after this byte
        m.d.comb += self.loading.eq(1)

        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)

        with m.FSM():
            with m.State("WAKE"):
                m.d.comb += [spi.select.eq(1), spi.i_tx.valid.eq(1),
                             spi.i_tx.payload.eq(CMD_RELEASE_POWER_DOWN)]
                with m.If(spi.i_tx.ready):
                    m.next = "WAKE_END"
            with m.State("WAKE_END"):
                m.d.comb += [spi.select.eq(1), rx.ready.eq(1)]
                with m.If(rx.valid):
                    m.d.sync += wait.eq(self.wake_cycles)
                    m.next = "WAKE_WAIT"
            with m.State("WAKE_WAIT"):               # CS high for tRES1
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [cmd.eq((CMD_READ << 24) | self.offset), cmd_left.eq(4),
                                 hdr_left.eq(HEADER_BYTES)]
                    m.next = "COMMAND"
            with m.State("COMMAND"):                 # opcode and address out, replies dropped
                m.d.comb += [spi.select.eq(1), rx.ready.eq(1)]
                with m.If(cmd_left != 0):
                    m.d.comb += [spi.i_tx.valid.eq(1), spi.i_tx.payload.eq(cmd[24:])]
                    with m.If(spi.i_tx.ready):
                        m.d.sync += [cmd.eq(cmd << 8), cmd_left.eq(cmd_left - 1)]
                with m.Elif(spi.idle):
                    m.next = "READ"
            with m.State("READ"):                    # one byte per dummy byte sent
                # A dummy byte out for every byte still to come (one in flight at a time).
                m.d.comb += [spi.select.eq(1), spi.i_tx.payload.eq(0),
                             spi.i_tx.valid.eq((hdr_left != 0) | (left != 0))]
                with m.If(hdr_left != 0):
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid):
                        m.d.sync += [hdr.eq(Cat(hdr[8:], rx.payload)), hdr_left.eq(hdr_left - 1)]
                        with m.If(hdr_left == 1):
                            m.next = "HEADER"
                with m.Elif(left != 0):
                    # Checking pass: every byte into the CRC; loading pass: also the decoder,
                    # which waits while a write is not taken.
                    m.d.comb += rx.ready.eq(~second | ~out.valid)
                    with m.If(rx.valid & rx.ready):
                        m.d.sync += [crc.eq(crc32_byte(crc, rx.payload)), left.eq(left - 1)]
                        with m.If(second):
                            m.d.sync += [field.eq(got), field_left.eq(field_left - 1)]
                            with m.If(field_left == 1):
                                self._field_done(m, got, field_bytes, A, D, in_data, target,
                                                 address, count, field_left, out)
                with m.Else():
                    m.next = "PASS_END"
            with m.State("HEADER"):
                m.d.comb += spi.select.eq(1)
                magic = int.from_bytes(MAGIC, "little")
                m.d.sync += [length.eq(hdr[96:128]), left.eq(hdr[96:128]),
                             crc.eq(0xFFFFFFFF), in_data.eq(0),
                             field_left.eq(1 + A + COUNT_BYTES)]
                with m.If(hdr[:32] != magic):
                    m.d.sync += self.status.eq(BootStatus.NO_IMAGE)
                    m.next = "STOP"
                with m.Elif(hdr[32:64] != FORMAT_VERSION):
                    m.d.sync += self.status.eq(BootStatus.BAD_FORMAT)
                    m.next = "STOP"
                with m.Elif(hdr[64:96] != self.key):
                    m.d.sync += self.status.eq(BootStatus.BAD_KEY)
                    m.next = "STOP"
                with m.Elif((hdr[96:128] > self.max_length) | (hdr[96:128] == 0)):
                    m.d.sync += self.status.eq(BootStatus.BAD_FORMAT)
                    m.next = "STOP"
                with m.Else():
                    m.next = "READ"
            with m.State("PASS_END"):                # the last write taken, the SPI idle
                m.d.comb += rx.ready.eq(1)
                with m.If(~out.valid & ~rx.valid & spi.idle):
                    with m.If(crc != ~hdr[128:160]):
                        m.d.sync += self.status.eq(BootStatus.BAD_CHECKSUM)
                        m.next = "STOP"
                    with m.Elif(second):
                        m.d.sync += self.status.eq(BootStatus.OK)
                        m.next = "STOP"
                    with m.Else():                   # checked: read the payload again, loading
                        m.d.sync += [second.eq(1), left.eq(length), crc.eq(0xFFFFFFFF),
                                     cmd.eq((CMD_READ << 24) | (self.offset + HEADER_BYTES)),
                                     cmd_left.eq(4), wait.eq(3)]
                        m.next = "DESELECT"
            with m.State("DESELECT"):                # CS high a few cycles between reads
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "COMMAND"
            with m.State("STOP"):                    # (no write is pending here)
                m.d.comb += self.loading.eq(0)
        return m

    def _field_done(self, m, got, field_bytes, A, D, in_data, target, address, count,
                    field_left, out):
        """A whole field has arrived (``got``, its bytes at the top): a run header or a data
        word."""
        hdr_bits = 8 * (1 + A + COUNT_BYTES)
        run = got[8 * field_bytes - hdr_bits:]
        word = got[8 * (field_bytes - D):]
        with m.If(~in_data):
            m.d.sync += [target.eq(run[:8]), address.eq(run[8:8 + 8 * A]),
                         count.eq(run[8 + 8 * A:]), field_left.eq(D)]
            with m.If(run[8 + 8 * A:] != 0):
                m.d.sync += in_data.eq(1)
            with m.Else():
                m.d.sync += field_left.eq(1 + A + COUNT_BYTES)
        with m.Else():
            m.d.sync += [out.valid.eq(1), out.payload.target.eq(target),
                         out.payload.address.eq(address), out.payload.data.eq(word),
                         address.eq(address + 1), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += [in_data.eq(0), field_left.eq(1 + A + COUNT_BYTES)]
            with m.Else():
                m.d.sync += field_left.eq(D)
