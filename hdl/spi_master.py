"""SPI master (mode 0, MSB first), one byte exchanged per transfer, for the configuration flash."""
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPIMaster", "spi_half_period"]


def spi_half_period(clk_hz: float, sck_max_hz: float) -> int:
    """Clock cycles per half period of SCK so that SCK stays at or below ``sck_max_hz``."""
    if clk_hz <= 0 or sck_max_hz <= 0:
        raise ValueError(f"spi: clock {clk_hz} Hz and SCK limit {sck_max_hz} Hz must be positive")
    return max(1, -(-int(round(clk_hz)) // int(2 * sck_max_hz)))


class SPIMaster(wiring.Component):
    """Exchanges one byte per item of ``i_tx`` on the SPI pins (mode 0: SCK idles low, COPI
    changes while SCK is low, CIPO is sampled at the end of SCK's high half, just before its
    falling edge, where the flash's next bit is launched).

    Parameters
    ----------
    half : int
        Clock cycles per half period of SCK (>= 1; :func:`spi_half_period`).

    Ports
    -----
    select : In(1)
        Chip select (active high here; the board inverts it to CS#). Drives ``cs`` from a
        flip-flop; the user changes it only while ``idle``.
    i_tx : In(stream.Signature(8))
        A byte to send; taken when the master is idle and the last received byte was taken.
    o_rx : Out(stream.Signature(8))
        The byte received during that transfer; held until taken. SCK stops (low) in the
        meantime: SPI flashes are static, a paused clock only pauses the read.
    idle : Out(1)
        No transfer in progress and no received byte waiting.
    sck, cs, copi : Out(1)
    cipo : In(1)

    Latency: a byte takes ``16 * half`` cycles from ``i_tx`` to ``o_rx``, plus one; throughput
    one byte per ``16 * half + 2`` cycles.
    """
    sck: Out(1)
    cs: Out(1)
    copi: Out(1)
    cipo: In(1)
    select: In(1)
    i_tx: In(stream.Signature(8))
    o_rx: Out(stream.Signature(8))
    idle: Out(1)

    def __init__(self, half: int):
        if isinstance(half, bool) or not isinstance(half, int) or half < 1:
            raise ValueError(f"spi: half period must be an integer >= 1, got {half!r}")
        self.half = half
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        shift = Signal(8)
        bits = Signal(range(9))          # bits still to send
        timer = Signal(range(self.half))
        active = Signal()
        # The received byte is the shift register, held until taken (no new byte before).
        m.d.comb += [self.copi.eq(shift[7]), self.o_rx.payload.eq(shift),
                     self.idle.eq(~active & ~self.o_rx.valid),
                     self.i_tx.ready.eq(~active & ~self.o_rx.valid)]
        m.d.sync += self.cs.eq(self.select)
        with m.If(self.o_rx.valid & self.o_rx.ready):
            m.d.sync += self.o_rx.valid.eq(0)
        with m.If(self.i_tx.valid & self.i_tx.ready):
            m.d.sync += [shift.eq(self.i_tx.payload), bits.eq(8), timer.eq(self.half - 1),
                         active.eq(1)]
        with m.If(active):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(self.half - 1), self.sck.eq(~self.sck)]
                with m.If(self.sck):
                    # End of the high half: sample CIPO, shift, next bit (or the byte is done).
                    m.d.sync += [shift.eq(Cat(self.cipo, shift[:7])), bits.eq(bits - 1)]
                    with m.If(bits == 1):
                        m.d.sync += [active.eq(0), self.o_rx.valid.eq(1)]
        return m
