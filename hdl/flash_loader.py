"""Flash loader: streams the model's flash image (hdl/flash_image.py) into the host link at power-up."""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CoreGeometry
from .flash_image import (CRC_BYTES, CRC_RESIDUE, FORMAT_VERSION, HEADER_BYTES, MAGIC, key_hash,
                          length_bits)
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
    BAD_CHECKSUM = 5  # CRC-32 wrong (first read: nothing written; second: after its writes)
    NO_LOADER = 7     # a board top without a flash loader


class FlashLoader(wiring.Component):
    """After reset: wakes the SPI flash (0xAB, then tRES1 with CS# high), then reads the image
    at ``offset`` twice (READ 0x03, 24-bit address). Both reads check the header byte by byte
    as it arrives (magic, format version, build key, a length that fits the length counter)
    and stop at the first difference; the first read only runs the CRC-32 over payload and
    trailer, the second (after tRES1 again, if the CRC matched) also passes every payload byte to
    ``o_data``, the host link's command decoder, which executes them as the CONFIG commands
    they are. A second read whose CRC differs (a flash that changed between the reads) ends
    in BAD_CHECKSUM too, after its writes.

    Parameters
    ----------
    geom : CoreGeometry
        The build (build key, the length counter's width).
    offset : int
        Byte address of the image in the flash (24 bits).
    half : int
        Clock cycles per half period of SCK (hdl/spi_master.py).
    wake_cycles : int
        Clock cycles with CS# high after the release-from-power-down command (tRES1), and
        between the two reads.

    Ports
    -----
    sck, cs, copi : Out(1)
    cipo : In(1)
        The flash's pins (``cs`` active high; the board inverts it to CS#).
    o_data : Out(stream.Signature(8))
        Payload bytes of the second read, into the host link (its ``i_boot``); backpressure
        just pauses the flash's clock.
    loading : Out(1)
        High from reset until ``status`` leaves LOADING: the host link decodes ``o_data``
        meanwhile, and the host's bytes wait in its receive FIFO.
    status : Out(BootStatus)

    Throughput: one flash byte per ``16 * half + 2`` cycles (the CRC takes a byte in 8 cycles,
    bit-serially, while the next is read); an image of ``n`` payload bytes takes about
    ``(2 * n + 48) * (16 * half + 2) + 2 * wake_cycles`` cycles.
    """
    def __init__(self, geom: CoreGeometry, offset: int, half: int, wake_cycles: int):
        if not 0 <= offset < (1 << 24) - HEADER_BYTES:
            raise ValueError(f"flash loader: offset {offset:#x} is not a 24-bit address")
        self.geom = geom
        self.offset = offset
        self.half = half
        self.wake_cycles = max(1, int(wake_cycles))
        self.key = key_hash(geom)
        self.length_bits = length_bits(geom)
        super().__init__({
            "sck": Out(1), "cs": Out(1), "copi": Out(1), "cipo": In(1),
            "o_data": Out(stream.Signature(8)),
            "loading": Out(1),
            "status": Out(BootStatus),
        })

    def elaborate(self, platform):
        L = self.length_bits
        m = Module()
        m.submodules.spi = spi = SPIMaster(self.half)
        m.d.comb += [self.sck.eq(spi.sck), self.cs.eq(spi.cs), self.copi.eq(spi.copi),
                     spi.cipo.eq(self.cipo)]
        rx = spi.o_rx

        # A read: 4 command bytes out (replies dropped), the header bytes in, then (`left`
        # counting) the payload, then the CRC bytes; `pos` counts the bytes received but those
        # of the payload, and names the one being sent
        cmd = ((CMD_READ << 24) | self.offset).to_bytes(4, "big")
        head = MAGIC + FORMAT_VERSION.to_bytes(2, "little") + bytes(2) + \
            self.key.to_bytes(4, "little")
        # (and, with CS# high, the cycles of tRES1).
        end = 4 + HEADER_BYTES + CRC_BYTES
        pos = Signal(range(max(end, self.wake_cycles) + 1))
        region = pos[2:5]             # header bytes: 1 magic, 2 version, 3 key, 4 length
        left = Signal(L)                          # payload bytes still to read
        more = Signal()                           # left != 0, as a register (timing)
        crc = Signal(32)
        crc_byte = Signal(8)                      # the byte the CRC takes, bit by bit
        crc_bits = Signal(range(9))
        second = Signal()                         # the loading read (else the checking read)

        with m.If(crc_bits != 0):                 # CRC-32, LSB first, one bit per cycle
            fb = crc[0] ^ crc_byte[0]
            m.d.sync += [crc.eq((crc >> 1) ^ Cat(*[fb & ((POLY >> i) & 1) for i in range(32)])),
                         crc_byte.eq(crc_byte >> 1), crc_bits.eq(crc_bits - 1)]

        # The expected header byte at `pos` and the bits compared (a length that fits L bits).
        exp, mask = Signal(8), Signal(8)
        with m.Switch(pos):
            for i, b in enumerate(head):
                with m.Case(4 + i):
                    m.d.comb += [exp.eq(b), mask.eq(0xFF)]
            for k in range(4):
                with m.Case(4 + 12 + k):
                    m.d.comb += mask.eq(0xFF & ~((1 << max(0, min(8, L - 8 * k))) - 1))
        differs = ((rx.payload ^ exp) & mask).any()

        # A payload byte taken counts down `left` one cycle later (timing: the SPI handshake
        # does not reach the counter's enable); the next byte is 16 * half + 2 cycles away.
        took = Signal()
        m.d.sync += took.eq(0)
        with m.If(took):
            m.d.sync += [left.eq(left - 1), more.eq(left != 1)]

        m.d.comb += self.loading.eq(1)
        with m.FSM():
            with m.State("WAKE"):
                m.d.comb += [spi.select.eq(1), spi.i_tx.valid.eq(1),
                             spi.i_tx.payload.eq(CMD_RELEASE_POWER_DOWN), rx.ready.eq(1)]
                with m.If(rx.valid):
                    m.next = "WAIT"
            with m.State("WAIT"):                     # CS# high for tRES1
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos == self.wake_cycles):
                    m.d.sync += [pos.eq(0), crc.eq(0xFFFFFFFF)]
                    m.next = "HEADER"
            with m.State("HEADER"):                   # command out, header in
                tx_byte = Signal(8)
                with m.Switch(pos):
                    for i, b in enumerate(cmd):
                        with m.Case(i):
                            m.d.comb += tx_byte.eq(b)
                m.d.comb += [spi.select.eq(1), spi.i_tx.valid.eq(1),
                             spi.i_tx.payload.eq(tx_byte), rx.ready.eq(1)]
                with m.If(rx.valid):
                    m.d.sync += pos.eq(pos + 1)
                    with m.Switch(pos):
                        for k in range(4):                # the length, byte k
                            if 8 * k < L:
                                with m.Case(4 + 12 + k):
                                    m.d.sync += left[8 * k:8 * k + 8].eq(rx.payload)
                    with m.If(differs):
                        with m.Switch(region):
                            for r, st in ((1, BootStatus.NO_IMAGE), (3, BootStatus.BAD_KEY)):
                                with m.Case(r):
                                    m.d.sync += self.status.eq(st)
                            with m.Default():         # the version or the length
                                m.d.sync += self.status.eq(BootStatus.BAD_FORMAT)
                        m.next = "STOP"
                    with m.Elif(pos == 4 + HEADER_BYTES - 1):
                        # A length of 0 (its last byte arriving now: bits 24 and up).
                        top = rx.payload[:max(0, min(8, L - 24))]
                        with m.If((left[:24] == 0) & ((top == 0) if len(top) else True)):
                            m.d.sync += self.status.eq(BootStatus.BAD_FORMAT)
                            m.next = "STOP"
                        with m.Else():
                            m.d.sync += more.eq(1)
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):                  # the payload, then the CRC bytes
                payload = more
                m.d.comb += [spi.select.eq(1), spi.i_tx.payload.eq(0),
                             spi.i_tx.valid.eq(payload | (pos != end)),
                             self.o_data.valid.eq(second & payload & rx.valid & (crc_bits == 0)),
                             self.o_data.payload.eq(rx.payload),
                             rx.ready.eq((crc_bits == 0) & (~second | ~payload | self.o_data.ready))]
                with m.If(rx.valid & rx.ready):
                    m.d.sync += [crc_byte.eq(rx.payload), crc_bits.eq(8)]
                    with m.If(payload):
                        m.d.sync += took.eq(1)
                    with m.Else():
                        m.d.sync += pos.eq(pos + 1)
                with m.If(~payload & (pos == end) & (crc_bits == 0)):
                    with m.If(crc != CRC_RESIDUE):
                        m.d.sync += self.status.eq(BootStatus.BAD_CHECKSUM)
                        m.next = "STOP"
                    with m.Elif(second):
                        m.d.sync += self.status.eq(BootStatus.OK)
                        m.next = "STOP"
                    with m.Else():                    # checked: read again, loading
                        m.d.sync += [second.eq(1), pos.eq(0)]
                        m.next = "WAIT"
            with m.State("STOP"):
                m.d.comb += self.loading.eq(0)
        return m
