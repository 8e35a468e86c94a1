"""Behavioural model of the board's SPI configuration flash (Winbond W25Q128JV, the iCEBreaker's;
the ULX3S's 25-series flashes take the same commands): the commands the flash loader uses.

:class:`SPIFlashModel` is the flash itself, driven pin change by pin change with the time in
nanoseconds: the Amaranth testbench of the loader hosts it (tests/hdl/test_hdl_flash_loader.py).
The board-top simulations (tests/sim/test_board_flash.py), whose boots clock every byte of a
model image twice, use the same behaviour in Verilog instead (sim/spi_flash_model.v, with the
constants below as parameters: :func:`flash_bench_verilog`), at the simulator's own speed;
tests/sim/test_spi_flash_model.py checks the two bit for bit on random transactions.

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
from pathlib import Path

__all__ = ["SPIFlashModel", "flash_bench_verilog", "flash_model_verilog", "flash_model_parameters",
           "flash_plusargs", "read_flash_log", "VERILOG_WINDOW_BYTES", "VERILOG_MODEL", "FLASH_PINS",
           "W25Q128JV_BYTES", "F_READ_HZ", "F_MAX_HZ", "T_RES1_NS", "T_SHSL_NS", "T_SLCH_NS",
           "T_CLH_NS"]

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


#: Bytes of flash the Verilog model holds from the image's offset (a larger image is refused).
VERILOG_WINDOW_BYTES = 1 << 20
VERILOG_MODEL = Path(__file__).with_name("spi_flash_model.v")
FLASH_PINS = ("flash_cs", "flash_sck", "flash_copi", "flash_cipo")


def flash_model_parameters() -> dict:
    """The Verilog model's parameters: the datasheet constants above."""
    return dict(WINDOW=VERILOG_WINDOW_BYTES, SIZE=W25Q128JV_BYTES, T_READ_NS=1e9 / F_READ_HZ,
                T_FAST_NS=1e9 / F_MAX_HZ, T_RES1_NS=float(T_RES1_NS), T_SHSL_NS=float(T_SHSL_NS),
                T_SLCH_NS=float(T_SLCH_NS), T_CLH_NS=float(T_CLH_NS))


def _model_instance(cs_n: str, sck: str, copi: str, cipo: str) -> str:
    params = ", ".join(f".{k}({v!r})" for k, v in flash_model_parameters().items())
    return (f"    bsnn_spi_flash_model #({params}) flash(\n"
            f"        .cs_n({cs_n}), .sck({sck}), .copi({copi}), .cipo({cipo}));\n")


def flash_model_verilog(module: str) -> str:
    """A Verilog top ``module`` with the flash's own pins (``cs_n``, ``sck``, ``copi``,
    ``cipo``) around ``bsnn_spi_flash_model`` (compile sim/spi_flash_model.v alongside)."""
    return (f"module {module}(input wire cs_n, input wire sck, input wire copi, output wire cipo);\n"
            + _model_instance("cs_n", "sck", "copi", "cipo") + "endmodule\n")


def flash_bench_verilog(dut_module: str, bench_module: str, ports) -> str:
    """A Verilog top ``bench_module`` holding ``dut_module`` (a board top, RTL or gate-level)
    with its ``flash_*`` pins wired to ``bsnn_spi_flash_model`` (compile sim/spi_flash_model.v
    alongside). ``ports``: ``(name, "in" | "out", width)`` of the board top's other ports, which
    the bench passes through under the same names, so a testbench drives it like the board top."""
    decl = ", ".join(f"{'input' if d == 'in' else 'output'} wire "
                     f"{f'[{w - 1}:0] ' if w > 1 else ''}{n}" for n, d, w in ports)
    conns = ", ".join(f".{n}({n})" for n, _, _ in ports)
    return (f"module {bench_module}({decl});\n"
            "    wire flash_cs, flash_sck, flash_copi, flash_cipo;\n"
            f"    {dut_module} board({conns}, .flash_cs(flash_cs), .flash_sck(flash_sck),\n"
            "        .flash_copi(flash_copi), .flash_cipo(flash_cipo));\n"
            + _model_instance("~flash_cs", "flash_sck", "flash_copi", "flash_cipo")
            + "endmodule\n")


def flash_plusargs(image: bytes, offset: int, workdir: Path) -> list:
    """The Verilog model's run-time arguments for ``image`` at flash address ``offset``: the
    image as a ``$readmemh`` file and the log file (:func:`read_flash_log`) in ``workdir``."""
    if len(image) > VERILOG_WINDOW_BYTES:
        raise ValueError(f"flash image of {len(image)} bytes is larger than the simulated flash "
                         f"window ({VERILOG_WINDOW_BYTES} bytes)")
    hex_path = Path(workdir) / "flash_image.hex"
    hex_path.write_text("\n".join(f"{b:02x}" for b in image) + "\n")
    # The model holds WINDOW bytes from its first address: the image's offset.
    return [f"+bsnn_flash_image={hex_path}", f"+bsnn_flash_base={offset}",
            f"+bsnn_flash_log={Path(workdir) / 'flash.log'}"]


def read_flash_log(path: Path) -> dict:
    """What the Verilog model logged: ``violations`` ("<t> ns: <text>"), ``commands``
    ((time_ns, opcode, address or None), as :class:`SPIFlashModel` records them) and
    ``bytes_read`` (data bytes clocked out whole, up to the last deselect)."""
    out = {"violations": [], "commands": [], "bytes_read": 0}
    for line in Path(path).read_text().splitlines():
        kind, *rest = line.replace("\x00", "").split(maxsplit=2)
        if kind == "violation":
            out["violations"].append(f"{rest[0]} ns: {rest[1].strip()}")
        elif kind == "command":
            out["commands"].append((float(rest[0]), int(rest[1]), None))
        elif kind == "address":
            t, op, addr = rest[0], *rest[1].split()
            out["commands"][-1] = (out["commands"][-1][0], int(op), int(addr))
        elif kind == "deselect":
            out["bytes_read"] = int(rest[1])
    return out
