"""Behavioural model of the board's SPI configuration flash (Winbond W25Q128JV, the iCEBreaker's;
the ULX3S's 25-series flashes take the same commands): the commands the flash loader uses.

:class:`SPIFlashModel` is the flash itself, driven pin change by pin change with the time in
nanoseconds, so that any simulator can host it: :func:`run_cocotb` on a cocotb DUT's pins
(tests/sim/test_board_flash.py), an Amaranth testbench in tests/hdl/test_hdl_flash_loader.py.

Modelled (SPI mode 0, MSB first):

* ``0xAB`` release from power-down: the flash takes commands ``T_RES1_NS`` after CS# rises
  behind it. It starts in power-down (as an FPGA may leave it after configuration), where any
  other command is ignored and the data output stays high-impedance (read as all ones here).
* ``0x03`` read data: 24-bit address, then one byte per 8 clocks from that address on,
  wrapping at the end of the array; erased bytes read ``0xFF``.
* ``0xB9`` power-down.

Timing checked against the datasheet (W25Q128JV, 3.0 V): SCK at most ``F_READ_HZ`` for 0x03
(``F_MAX_HZ`` otherwise), SCK high and low at least ``T_CLH_NS``; CS# deselect time
``T_SHSL_NS``; CS# setup to the first SCK rise ``T_SLCH_NS``; a command while the flash is
still waking (``T_RES1_NS``) is lost. Every violation is recorded in ``violations``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SPIFlashModel", "run_cocotb", "W25Q128JV_BYTES", "F_READ_HZ", "F_MAX_HZ",
           "T_RES1_NS", "T_SHSL_NS", "T_SLCH_NS", "T_CLH_NS"]

W25Q128JV_BYTES = 16 << 20
F_READ_HZ = 50e6        # fR: clock of the Read Data (03h) instruction
F_MAX_HZ = 133e6        # fR for the other instructions
T_RES1_NS = 3000        # CS# high to standby after release from power-down (max)
T_SHSL_NS = 10          # CS# deselect time (read)
T_SLCH_NS = 5           # CS# active setup relative to CLK
T_CLH_NS = 6            # CLK high / low time (read data)


@dataclass
class SPIFlashModel:
    data: dict = field(default_factory=dict)      # address -> byte (absent: erased, 0xFF)
    size: int = W25Q128JV_BYTES
    powered_down: bool = True
    violations: list = field(default_factory=list)
    commands: list = field(default_factory=list)  # (time_ns, opcode, address or None)
    bytes_read: int = 0                           # data bytes clocked out whole

    def __post_init__(self):
        self._selected = False
        self._awake_at = None if self.powered_down else 0.0
        self._t_cs_rise = -1e18
        self._t_cs_fall = -1e18
        self._t_sck = -1e18
        self._t_rise = None
        self._sck = 0
        self._reset_command()

    @classmethod
    def with_image(cls, image: bytes, offset: int, **kw) -> "SPIFlashModel":
        return cls({offset + i: b for i, b in enumerate(image)}, **kw)

    def _reset_command(self):
        self._bits = 0
        self._shift = 0
        self._opcode = None
        self._address = None
        self._out = 0xFF
        self._out_bits = 0
        self._ignore = False
        self.cipo = 1

    def _violation(self, text: str, t_ns: float):
        self.violations.append(f"{t_ns:.0f} ns: {text}")

    # ---- pins ---------------------------------------------------------------------------------
    def set_cs_n(self, cs_n: int, t_ns: float) -> None:
        if not cs_n and not self._selected:
            if t_ns - self._t_cs_rise < T_SHSL_NS:
                self._violation(f"CS# high only {t_ns - self._t_cs_rise:.0f} ns < tSHSL", t_ns)
            self._selected = True
            self._t_cs_fall = t_ns
            self._reset_command()
        elif cs_n and self._selected:
            self._selected = False
            self._t_cs_rise = t_ns
            if self._opcode == 0xAB and self._bits == 8:
                if self.powered_down:
                    self._awake_at = t_ns + T_RES1_NS
                self.powered_down = False
            elif self._opcode == 0xB9 and self._bits == 8:
                self.powered_down = True
                self._awake_at = None
            self.cipo = 1

    def set_sck(self, sck: int, copi: int, t_ns: float) -> None:
        if sck == self._sck:
            return
        read = self._opcode == 0x03
        limit = F_READ_HZ if read else F_MAX_HZ
        if self._selected and t_ns - self._t_sck < T_CLH_NS:
            self._violation(f"SCK {'low' if sck else 'high'} only {t_ns - self._t_sck:.1f} ns", t_ns)
        self._sck = sck
        self._t_sck = t_ns
        if not self._selected:
            return
        if sck:
            if self._t_rise is not None and self._bits and t_ns - self._t_rise < 1e9 / limit - 1e-6:
                self._violation(f"SCK period {t_ns - self._t_rise:.1f} ns above "
                                f"{limit / 1e6:.0f} MHz", t_ns)
            if self._bits == 0 and t_ns - self._t_cs_fall < T_SLCH_NS:
                self._violation("SCK rises less than tSLCH after CS# falls", t_ns)
            self._t_rise = t_ns
            self._rise(copi, t_ns)
        else:
            self._fall()

    def _rise(self, copi: int, t_ns: float) -> None:
        self._shift = ((self._shift << 1) | (copi & 1)) & 0xFFFFFFFF
        self._bits += 1
        if self._bits == 8:
            opcode = self._shift & 0xFF
            asleep = self.powered_down or (self._awake_at is not None and t_ns < self._awake_at)
            if asleep and opcode != 0xAB:
                if not self.powered_down:
                    self._violation(f"command {opcode:#04x} {self._awake_at - t_ns:.0f} ns "
                                    "before tRES1 has passed", t_ns)
                self._ignore = True
            self._opcode = opcode
            self.commands.append((t_ns, opcode, None))
        elif self._bits == 32 and self._opcode == 0x03 and not self._ignore:
            self._address = self._shift & 0xFFFFFF
            self.commands[-1] = (self.commands[-1][0], 0x03, self._address)
        elif self._bits > 32 and self._bits % 8 == 0 and self._opcode == 0x03 and not self._ignore:
            self.bytes_read += 1          # the 8th clock of a data byte

    def _fall(self) -> None:
        """Shift the next data bit out (after the 32nd clock of a read)."""
        if self._ignore or self._opcode != 0x03 or self._bits < 32:
            return
        if self._out_bits == 0:
            self._out = self.data.get(self._address % self.size, 0xFF)
            self._address += 1
            self._out_bits = 8
        self._out_bits -= 1
        self.cipo = (self._out >> self._out_bits) & 1


async def run_cocotb(dut, flash: SPIFlashModel, cs="flash_cs", sck="flash_sck", copi="flash_copi",
                     cipo="flash_cipo", cs_active_high=True):
    """Drive ``flash`` from a cocotb DUT's pins (a coroutine to ``cocotb.start_soon``). ``cs``
    is the chip select as the DUT drives it (active high, the board inverts it to CS#). One
    callback per pin change: CS# and SCK are watched by two tasks (CS# never changes in the same
    clock cycle as SCK: the loader keeps SCK low around it)."""
    import cocotb
    from cocotb.utils import get_sim_time

    cs_sig, sck_sig, copi_sig, cipo_sig = (getattr(dut, n) for n in (cs, sck, copi, cipo))
    cipo_sig.value = 1

    async def chip_select():
        while True:
            await cs_sig.value_change
            sel = int(cs_sig.value) if cs_active_high else 1 - int(cs_sig.value)
            flash.set_cs_n(0 if sel else 1, get_sim_time("ns"))
            cipo_sig.value = flash.cipo

    cocotb.start_soon(chip_select())
    while True:
        await sck_sig.value_change
        flash.set_sck(int(sck_sig.value), int(copi_sig.value), get_sim_time("ns"))
        cipo_sig.value = flash.cipo
