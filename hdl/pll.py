"""Board clock: a PLL from the board's oscillator to the core's clock, and the reset that holds
the design until the PLL has locked (iCE40 SB_PLL40_CORE, ECP5 EHXPLLL).

The PLL settings are searched here from the datasheet relations (no vendor tool):

* iCE40 (Lattice TN1251, iCE40 sysCLOCK PLL, SIMPLE feedback):
  ``f_pfd = f_in / (DIVR + 1)`` in [10, 133] MHz, ``f_vco = f_pfd * (DIVF + 1)`` in
  [533, 1066] MHz, ``f_out = f_vco / 2**DIVQ`` in [16, 275] MHz, DIVR 0..15, DIVF 0..127,
  DIVQ 1..6; the loop filter range follows ``f_pfd``.
* ECP5 (Lattice TN1263, ECP5 sysCLOCK PLL, feedback from CLKOP):
  ``f_pfd = f_in / CLKI_DIV`` >= 3.125 MHz, ``f_out = f_pfd * CLKFB_DIV``,
  ``f_vco = f_out * CLKOP_DIV`` in [400, 800] MHz; CLKI_DIV 1..128, CLKFB_DIV 1..80,
  CLKOP_DIV 1..128.
"""
from dataclasses import dataclass

from amaranth.hdl import (Cat, ClockDomain, Const, DomainRenamer, Elaboratable, Instance, Module,
                          Signal)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from bsnn.firmware_export.errors import BuildError

__all__ = ["PLLError", "ICE40PLL", "ECP5PLL", "ice40_pll", "ecp5_pll", "LockReset", "BoardClock"]


class PLLError(BuildError, ValueError):
    """No PLL setting reaches the requested frequency within the device's limits."""


@dataclass(frozen=True)
class ICE40PLL:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in: float
    f_out: float             # achieved output frequency (Hz)

    @property
    def f_pfd(self):
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self):
        return self.f_pfd * (self.divf + 1)


@dataclass(frozen=True)
class ECP5PLL:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float

    @property
    def f_pfd(self):
        return self.f_in / self.clki_div

    @property
    def f_vco(self):
        return self.f_out * self.clkop_div


def _ice40_filter_range(f_pfd):
    for limit, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if f_pfd < limit:
            return value
    return 6


def ice40_pll(f_in: float, f_out: float) -> ICE40PLL:
    """The iCE40 PLL setting whose output is closest to ``f_out`` without exceeding it (a
    clock above the requested one could break timing)."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = f_vco / (1 << divq)
                if not 16e6 <= f <= 275e6 or f > f_out * (1 + 1e-9):
                    continue
                if best is None or f > best.f_out:
                    best = ICE40PLL(divr, divf, divq, _ice40_filter_range(f_pfd), f_in, f)
    if best is None:
        raise PLLError(f"no iCE40 PLL setting gives <= {f_out / 1e6:g} MHz from "
                       f"{f_in / 1e6:g} MHz (outputs 16..275 MHz)")
    return best


def ecp5_pll(f_in: float, f_out: float) -> ECP5PLL:
    """The ECP5 PLL setting whose output is closest to ``f_out`` without exceeding it."""
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if f_pfd < 3.125e6:
            break
        for clkfb_div in range(1, 81):
            f = f_pfd * clkfb_div
            if f > f_out * (1 + 1e-9):
                break
            # The highest VCO frequency in range (lowest jitter).
            for clkop_div in range(128, 0, -1):
                if 400e6 <= f * clkop_div <= 800e6:
                    if best is None or f > best.f_out:
                        best = ECP5PLL(clki_div, clkfb_div, clkop_div, f_in, f)
                    break
    if best is None:
        raise PLLError(f"no ECP5 PLL setting gives <= {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


class LockReset(wiring.Component):
    """``ready`` rises ``por_cycles + 3`` cycles after ``lock`` rises (2 of them synchronize the
    asynchronous ``lock``), and falls 3 cycles after ``lock`` falls. A reset-less design: it
    generates the reset of the domain it is used for.

    Ports
    -----
    lock : In(1)
        The PLL's lock output (asynchronous).
    ready : Out(1)
        Registered; the domain's reset is ``~ready``.
    """
    lock: In(1)
    ready: Out(1)

    def __new__(cls, por_cycles: int = 0):
        # Checked before the unit exists: a refused one leaves no "unused elaboratable" behind
        # (src_loc_at: the creator's line, not this one, is where Amaranth reports an unused unit).
        if por_cycles < 0:
            raise ValueError(f"por_cycles must be >= 0, got {por_cycles}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, por_cycles: int = 0):
        self.por_cycles = por_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        lock_sync = Signal(2)
        count = Signal(range(self.por_cycles + 1))
        m.d.sync += lock_sync.eq(Cat(self.lock, lock_sync[0]))
        with m.If(~lock_sync[1]):
            m.d.sync += [count.eq(0), self.ready.eq(0)]
        with m.Elif(count == self.por_cycles):
            m.d.sync += self.ready.eq(1)
        with m.Else():
            m.d.sync += count.eq(count + 1)
        return m


class BoardClock(Elaboratable):
    """Drives the clock and reset of ``domain`` (defined by the caller, usually ``sync``): the
    PLL's output at ``pll.f_out`` from the board oscillator ``clk_port`` (a port from
    ``platform.request(..., dir="-")``).

    Reset: held while the PLL is not locked, then for ``por_cycles`` more cycles (the iCE40's
    block RAMs read as zero for some microseconds after configuration), released synchronously;
    on the ECP5 it is distributed on a global network (a ``DCCA``).
    ``pll`` is an :class:`ICE40PLL` or :class:`ECP5PLL`.
    """
    def __init__(self, clk_port, pll, domain: ClockDomain, por_cycles: int = 0):
        self.clk_port = clk_port
        self.pll = pll
        self.domain = domain
        self.por_cycles = por_cycles
        self.lock = Signal()

    def elaborate(self, platform):
        m = Module()
        cd_sync = self.domain
        p = self.pll
        if isinstance(p, ICE40PLL):
            # The oscillator's pin is the PLL's own input pad (iCEBreaker: pin 35): the PLL
            # takes it directly, without an input buffer.
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=Const(p.divr, 4), p_DIVF=Const(p.divf, 7), p_DIVQ=Const(p.divq, 3),
                p_FILTER_RANGE=Const(p.filter_range, 3),
                io_PACKAGEPIN=self.clk_port.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=cd_sync.clk, o_LOCK=self.lock)
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", self.clk_port)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{p.f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out / 1e6:g}",
                # Loop-filter settings of the Lattice PLL model (the same for every divider).
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div, p_CLKOP_CPHASE=p.clkop_div - 1,
                p_CLKOP_FPHASE=0, p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div,
                p_FEEDBK_PATH="CLKOP",
                i_CLKI=clk_buf.i, i_CLKFB=cd_sync.clk, i_RST=Const(0), i_STDBY=Const(0),
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0),
                o_CLKOP=cd_sync.clk, o_LOCK=self.lock)
        # The reset logic runs in a domain of its own without reset (it is the reset).
        m.domains.por = cd_por = ClockDomain("por", reset_less=True)
        m.d.comb += cd_por.clk.eq(cd_sync.clk)
        m.submodules.lock_reset = lr = DomainRenamer("por")(LockReset(self.por_cycles))
        m.d.comb += lr.lock.eq(self.lock)
        if isinstance(p, ICE40PLL):
            m.d.comb += cd_sync.rst.eq(~lr.ready)
        else:
            # The reset reaches every flip-flop of the design: on the ECP5 it takes a global
            # network (a DCCA, as a clock does) instead of the fabric, where nextpnr routes a net
            # of tens of thousands of loads across the chip (timing: in the parallel core that
            # route, 13.7 ns from one LUT, was the longest path once the accumulators were fixed).
            reset = Signal()
            m.d.comb += reset.eq(~lr.ready)
            m.submodules.reset_buf = Instance("DCCA", i_CLKI=reset, i_CE=Const(1),
                                              o_CLKO=cd_sync.rst)
        return m
