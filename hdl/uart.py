"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit) with byte streams."""
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "uart_divisor", "sample_point", "receiver_tolerance", "UARTBridge",
           "BRIDGES", "uart_budget"]


def sample_point(divisor: int) -> int:
    """Cycles into each bit (from the start bit's falling edge, for an edge on a clock edge) at
    which :class:`UARTRx` samples it; measured in tests/hdl/test_hdl_uart.py."""
    return divisor // 2


def receiver_tolerance(divisor: int) -> float:
    """The largest relative rate mismatch between a sender and :class:`UARTRx` at ``divisor``
    cycles per bit at which every bit of a frame is still sampled inside itself, whatever the
    phase of the sender's edges to the clock (one cycle of uncertainty): bit ``k`` (start 0, stop
    9) is sampled ``k * divisor + sample_point`` cycles after the start edge, give or take one,
    and must fall in ``[k, k + 1)`` sender bit times. A slower sender pushes the stop bit past
    the sample, a faster one pulls it before."""
    s = sample_point(divisor)
    return min((s - 1) / (9 * divisor), (divisor - s - 1) / (10 * divisor))


@dataclass(frozen=True)
class UARTBridge:
    """A USB-UART bridge chip: the highest rate it makes, and how it makes one (FTDI: a base
    clock divided by ``n + k/8``, ``n >= 2``, with the special divisors 0 and 1 giving the base
    rate and 2/3 of it; FTDI application note AN232B-05, "Configuring FT232R, FT2232 and FT232B
    Baud Rates")."""
    name: str
    max_baud: int
    base_hz: float

    def rate(self, baud: int) -> float:
        """The rate the bridge actually makes when asked for ``baud``."""
        d = self.base_hz / baud
        if d < 1.25:
            return self.base_hz
        if d < 1.75:
            return self.base_hz / 1.5
        return self.base_hz / (max(16, round(d * 8)) / 8)


#: The boards' bridges (``bsnn.hdl.board.Board.uart_bridge``): the iCEBreaker's FT2232H
#: (hi-speed: 12 MHz base), the ULX3S's FT231X (3 MHz base).
BRIDGES = {"FT2232H": UARTBridge("FT2232H", 12_000_000, 12e6),
           "FT231X": UARTBridge("FT231X", 3_000_000, 3e6)}


def uart_divisor(clk_hz: float, baud: int, far_rate: float | None = None) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``. The error budget: the mismatch between
    this rate and the far end's (``far_rate``, the rate its bridge makes; ``baud`` if not given)
    must stay within half of :func:`receiver_tolerance` (the other half for both crystals, edge
    asymmetry and the far end's own receiver); anything else is refused."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"uart: clock {clk_hz} Hz and baud rate {baud} must be positive")
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"uart: {clk_hz} Hz is too slow for {baud} baud (need >= 4 cycles/bit)")
    far = baud if far_rate is None else far_rate
    err = abs(clk_hz / div / far - 1)
    budget = receiver_tolerance(div) / 2
    if err > budget:
        raise ValueError(f"uart: {clk_hz:.0f} Hz / {div} = {clk_hz / div:.0f} baud is {100 * err:.1f} % "
                         f"off {far:.0f} (the budget at {div} cycles per bit is {100 * budget:.1f} %)")
    return div


def uart_budget(bridge: UARTBridge, baud: int, clk_hz: float, divisor: int) -> dict:
    """The error budget of a link, for reports: the rates each end makes, their mismatch and
    what the receiver tolerates at ``divisor`` (:func:`uart_divisor` checked it)."""
    far, near = bridge.rate(baud), clk_hz / divisor
    return {"bridge": bridge.name, "bridge_max_baud": bridge.max_baud, "baud": baud,
            "bridge_rate": far, "divisor": divisor, "core_rate": near,
            "mismatch": abs(near / far - 1), "receiver_tolerance": receiver_tolerance(divisor),
            "budget": receiver_tolerance(divisor) / 2}


def _check_divisor(divisor) -> None:
    """Refuse a clock divisor below 4 cycles per bit (shared by RX and TX)."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"uart: divisor must be an integer >= 4, got {divisor!r}")


class UARTRx(wiring.Component):
    """UART receiver: 8N1 frames on ``rx`` become bytes on ``o_data``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4); see :func:`uart_divisor`.

    Ports
    -----
    rx : In(1)
        The serial line (idle high); synchronised inside.
    o_data : Out(stream.Signature(8))
        One byte per frame with a valid stop bit. A byte not taken before the next frame ends
        is replaced by it and ``overrun`` is set.
    overrun : Out(1)
        Sticky: a byte was lost because ``o_data`` was not ready.
    frame_error : Out(1)
        Sticky: a frame had a low stop bit (the byte was dropped).
    """
    rx: In(1, init=1)
    o_data: Out(stream.Signature(8))
    overrun: Out(1)
    frame_error: Out(1)

    def __new__(cls, divisor: int):
        # Checked before the unit exists: a refused one leaves no "unused elaboratable" behind
        # (src_loc_at: the creator's line, not this one, is where Amaranth reports an unused unit).
        _check_divisor(divisor)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        # Counts down and expires when it turns negative: the test is its sign bit (timing),
        # so a wait of n cycles loads n - 2 where a down-counter to zero would load n - 1.
        timer = Signal(range(-1, self.divisor * 3 // 2 + 1))
        expired = timer[-1]
        bit = Signal(range(10))
        shift = Signal(8)
        with m.If(self.o_data.valid & self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Wait to the middle of the start bit.
                    m.d.sync += [timer.eq(sample_point(self.divisor) - 2), bit.eq(0)]
                    m.next = "START"
            with m.State("START"):
                with m.If(~expired):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"          # a glitch, not a start bit
                with m.Else():
                    m.d.sync += timer.eq(self.divisor - 2)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(~expired):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)),
                                 timer.eq(self.divisor - 2), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(~expired):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        with m.If(self.o_data.valid & ~self.o_data.ready):
                            m.d.sync += self.overrun.eq(1)
                        m.d.sync += [self.o_data.payload.eq(shift), self.o_data.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter: bytes from ``i_data`` go out on ``tx`` as 8N1 frames.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Ports
    -----
    i_data : In(stream.Signature(8))
        Ready while the transmitter is idle; one byte per 10 bit times.
    tx : Out(1)
        The serial line, idle high.
    """
    i_data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __new__(cls, divisor: int):
        # Checked before the unit exists: a refused one leaves no "unused elaboratable" behind
        # (src_loc_at: the creator's line, not this one, is where Amaranth reports an unused unit).
        _check_divisor(divisor)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shift = Signal(10)          # start bit, 8 data bits LSB first, stop bit
        bits = Signal(range(11))
        m.d.comb += self.i_data.ready.eq(bits == 0)
        with m.If(bits == 0):
            m.d.sync += self.tx.eq(1)
            with m.If(self.i_data.valid):
                m.d.sync += [shift.eq((1 << 9) | (self.i_data.payload << 1)), bits.eq(10),
                             timer.eq(0)]
        with m.Else():
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 1):
                    m.d.sync += bits.eq(bits - 1)
        return m
