"""Board tops: the core behind a UART host link, for the iCEBreaker and the ULX3S (amaranth-boards)."""
# (no `from __future__ import annotations`: wiring.Component reads the port annotations)

import math
from dataclasses import dataclass

from amaranth.hdl import Cat, ClockDomain, Const, Elaboratable, Instance, Module, Mux
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bsnn.firmware_export.errors import BuildError

from .batch import BatchUnit, batch_words_check
from .config import CoreGeometry, HardwareConfig, span
from .core import BSNNCore
from .flash_loader import T_RES1_S, BootStatus, FlashLoader
from .hostlink import RX_FIFO_DEPTH, HostLink
from .layouts import (InputEventLayout, NeuronStateLayout, OutputStatsLayout,
                      SpikeGroupLayout)
from .pll import BoardClock, ICE40PLL, ecp5_pll, ice40_pll
from .selftest import SelfTest, SelfTestStatus
from .single_port import spram_blocks
from .spi_master import spi_half_period
from .uart import BRIDGES, UARTRx, UARTTx, uart_divisor
from .weights import SPRAM_COUNT, SPRAM_WORDS, spram_banks, spram_packing

__all__ = ["BoardTop", "BOARDS", "Board", "DeviceFitError", "FlashBoot", "FLASH_SCK_MAX_HZ", "plan_build", "memory_plan",
           "platform_top", "board_pll", "memory_templates"]


class DeviceFitError(BuildError, ValueError):
    """A network (with its hardware config) cannot fit the chosen device."""


@dataclass(frozen=True)
class Board:
    name: str
    family: str              # "ice40" or "ecp5"
    device: str
    osc_hz: float            # the board's oscillator: the clock the board top runs from
    bram_blocks: int
    bram_bits: int           # per block
    spram: int               # SB_SPRAM256KA count (iCE40UP5K)
    luts: int
    target_mhz: float        # the clock constraint place-and-route is timed against
    clock_mhz: float         # the core's clock from the PLL (default; [board] clock_mhz)
    flash_bytes: int         # the SPI configuration flash (the smallest fitted on the board)
    flash_offset: int        # where the model's flash image goes, behind the bitstream
    uart_bridge: str         # the USB-UART bridge chip on the board (hdl/uart.py BRIDGES)

    def platform_class(self):
        if self.family == "ice40":
            from amaranth_boards.icebreaker import ICEBreakerPlatform
            return ICEBreakerPlatform
        from amaranth_boards import ulx3s
        return {"LFE5U-85F": ulx3s.ULX3S_85F_Platform, "LFE5U-25F": ulx3s.ULX3S_25F_Platform,
                "LFE5U-45F": ulx3s.ULX3S_45F_Platform}[self.device]


# Flash images (docs/board.md): the iCEBreaker's W25Q128JV holds 16 MiB, the UP5K bitstream
# its first 104 KB; the ULX3S is fitted with 4 to 32 MiB, an ECP5-85F bitstream takes up to
# 2.3 MB (uncompressed): 3 MiB is behind every bitstream and inside the smallest flash.
MiB = 1 << 20
BOARDS = {
    "icebreaker": Board("icebreaker", "ice40", "iCE40UP5K", 12e6, 30, 4096, 4, 5280, 42.0, 33.0,
                        16 * MiB, 1 * MiB, "FT2232H"),
    "ulx3s-85f": Board("ulx3s-85f", "ecp5", "LFE5U-85F", 25e6, 208, 18432, 0, 83640, 110.0, 90.0,
                       4 * MiB, 3 * MiB, "FT231X"),
    "ulx3s-45f": Board("ulx3s-45f", "ecp5", "LFE5U-45F", 25e6, 108, 18432, 0, 43848, 110.0, 90.0,
                       4 * MiB, 3 * MiB, "FT231X"),
    "ulx3s-25f": Board("ulx3s-25f", "ecp5", "LFE5U-25F", 25e6, 56, 18432, 0, 24288, 110.0, 90.0,
                       4 * MiB, 3 * MiB, "FT231X"),
}

def board_uart_divisor(board: Board, clk_hz: float, baud: int) -> int:
    """The UART divisor of ``board``'s core clock for ``baud``, within the error budget against
    the rate the board's USB bridge makes for it (:func:`bsnn.hdl.uart.uart_divisor`);
    a rate above the bridge's or outside the budget is a ValueError."""
    bridge = BRIDGES[board.uart_bridge]
    if baud > bridge.max_baud:
        raise ValueError(f"uart: {baud} baud is above the {bridge.max_baud} of the "
                         f"{board.name}'s {bridge.name}")
    return uart_divisor(clk_hz, baud, bridge.rate(baud))


#: SCK limit of the flash loader on a board: half the flash's 50 MHz for READ (0x03), a margin
#: for the board's traces and the FPGA's pin delays (the loader samples late in the high half).
FLASH_SCK_MAX_HZ = 25e6


@dataclass(frozen=True)
class FlashBoot:
    """Where and how the board top's flash loader reads the model image."""
    offset: int              # byte address of the image in the flash
    half: int                # core clock cycles per half period of SCK
    wake_cycles: int         # core clock cycles of tRES1 (release from power-down)

    @classmethod
    def for_clock(cls, offset: int, clk_hz: float, sck_max_hz: float = FLASH_SCK_MAX_HZ):
        return cls(offset, spi_half_period(clk_hz, sck_max_hz), math.ceil(T_RES1_S * clk_hz) + 1)

# Block RAM shapes (depth, width) the synthesis can choose for a memory.
_SHAPES = {"ice40": [(256, 16), (512, 8), (1024, 4), (2048, 2)],
           "ecp5": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)]}


# Memories at most this deep become distributed RAM instead (ECP5 TRELLIS_DPR16X4, 16 x 4 bits
# in the LUTs: Yosys's choice for small memories such as the output statistics of a core with
# a few neuron lanes); the iCE40 has none. (One-word accumulators and output statistics are
# flip-flops on both: hdl/register_memory.py.)
_LUTRAM_DEPTH = {"ice40": 0, "ecp5": 16}


def _blocks(family, depth, width):
    """Block RAMs of a ``depth`` x ``width`` memory in the shape Yosys' memory mapping picks: the
    fewest blocks, weighed against the read multiplexer that stacking blocks in depth needs. A
    block counts as much as 128 multiplexed bits, within the range the placed builds allow
    (96 to 264): 1,568 x 44 bits takes 22 blocks of 2048 x 2, not 21 of 256 x 16 stacked 7 deep
    (the strided UP5K build's accumulators), while 3,274 x 16 takes 13 of 256 x 16 stacked 13
    deep, not 14 of 512 x 8 (the 98.70 % UP5K build's neuron state)."""
    if depth <= _LUTRAM_DEPTH[family]:
        return 0
    costs = []
    for d, w in _SHAPES[family]:
        stacked, columns = -(-depth // d), -(-width // w)
        costs.append((128 * stacked * columns + width * (stacked - 1), stacked * columns))
    return min(costs)[1]


def memory_plan(geom: CoreGeometry, hw: HardwareConfig, board: Board, rx_depth=RX_FIFO_DEPTH,
                batch_words: int = 0) -> dict:
    """Block RAM (and SPRAM) use of a build on ``board``: an estimate by memory shapes, as the
    synthesis maps them (each memory rounded up to whole blocks); ``batch_words``: the batch
    unit's memory (hdl/batch.py), 0 for none."""
    f = board.family
    U = geom.neuron_lanes
    state = NeuronStateLayout(geom.v_width, geom.c_width, current=geom.state_current,
                              fired=geom.state_fired)
    spram = 0
    if geom.state_memory == "spram":
        spram += spram_blocks(len(span(geom.bank_depth)), state.size)
    low, high_depth = geom.accumulator_split
    mems = {
        "neuron_state": 0 if geom.state_memory == "spram" else U * _blocks(f, geom.bank_depth, state.size),
        "bias": U * _blocks(f, geom.param_depth, geom.stored_bias_width),
        "threshold": U * _blocks(f, geom.param_depth, geom.stored_threshold_width),
        "output_stats": 0 if geom.stats_in_flip_flops else U * _blocks(
            f, geom.groups[-1], OutputStatsLayout().size),
        "accumulators": 0 if geom.acc_in_flip_flops else (
            _blocks(f, geom.acc_depth, geom.lanes * low)
            + (high_depth and _blocks(f, high_depth, geom.lanes * (geom.syn_w - low)))),
        "host_rx_fifo": _blocks(f, rx_depth, 8),
    }
    if batch_words:
        mems["batch"] = _blocks(f, batch_words, InputEventLayout(geom.idx_w).size)
    if geom.spike_queue_depth:
        width = SpikeGroupLayout(geom.group_w, U).size
        if geom.queue_memory == "spram":    # (SinglePortFIFO: a power-of-two depth)
            mems["spike_queue"] = 0
            spram += spram_blocks(1 << ceil_log2(max(2, max(geom.groups[:-1]))), width)
        else:
            mems["spike_queue"] = _blocks(f, geom.spike_queue_depth, width)
    if hw.weight_memory == "spram":
        spram += spram_banks(geom)
    else:
        # (in banks of weight_bank_words words, each rounded up to whole blocks)
        bank = hw.weight_bank_words or geom.weight_depth
        full, rest = divmod(geom.weight_depth, bank)
        mems["weights"] = full * _blocks(f, bank, geom.lanes) + (rest and _blocks(f, rest, geom.lanes))
    return {"bram_blocks": sum(mems.values()), "bram_by_memory": mems, "spram": spram,
            "weight_bits": geom.weight_depth * geom.lanes}


def plan_build(bundle, hw: HardwareConfig, board: Board, weights: str = "auto",
               batch_words: int = 0, single_port_spram: bool = False):
    """Choose the weight memory (``weights``: ``auto``, ``bram`` or ``spram``) and check that the
    build (with a batch memory of ``batch_words`` words) fits ``board``; returns
    ``(hw, geom, plan)`` or raises :class:`DeviceFitError`. ``single_port_spram`` (``[board]
    spram_single_port``): the memories ``hw`` uses through one port (``neuron_state_memory``,
    ``spike_queue_memory = "single_port"``) become SPRAM."""
    if weights not in ("auto", "bram", "spram"):
        raise ValueError(f"weights: must be auto, bram or spram, got {weights!r}")
    if (weights == "spram" or single_port_spram) and not board.spram:
        raise DeviceFitError(f"{board.device} has no SPRAM (weights = \"{weights}\", "
                             f"spram_single_port = {str(single_port_spram).lower()})")
    if single_port_spram:
        hw = hw.replace(**{name: "spram" for name in ("neuron_state_memory", "spike_queue_memory")
                           if getattr(hw, name) == "single_port"})
    tries = ["bram", "spram"] if weights == "auto" and board.spram else \
        [weights if weights != "auto" else "bram"]
    hw = hw.for_bundle(bundle)          # U = 1 for a convolutional network
    problems = []
    for kind in tries:
        h = hw.replace(weight_memory=kind)
        try:
            h = HardwareConfig(**h.to_dict())          # validates lanes <= 16 for SPRAM
        except ValueError as exc:
            problems.append(f"{kind}: {exc}")
            continue
        geom = CoreGeometry.from_bundle(bundle, h)
        plan = memory_plan(geom, h, board, batch_words=batch_words)
        over = []
        if plan["bram_blocks"] > board.bram_blocks:
            detail = ", ".join(f"{k} {v}" for k, v in plan["bram_by_memory"].items())
            over.append(f"{plan['bram_blocks']} block RAMs > {board.bram_blocks} ({detail})")
        if plan["spram"] > board.spram:
            over.append(f"{plan['spram']} SPRAMs > {board.spram} (weights "
                        + (f"{spram_banks(geom)}: {geom.weight_depth} words of {geom.lanes} bits, at "
                           f"most {SPRAM_COUNT * SPRAM_WORDS * spram_packing(geom.lanes)[1]}"
                           if kind == "spram" else "in block RAM")
                        + f"; neuron state {geom.state_memory}, spike queue {geom.queue_memory})")
        if not over:
            return h, geom, plan
        problems.append(f"weights in {kind}: " + "; ".join(over))
    sizes = "-".join(map(str, bundle.sizes))
    raise DeviceFitError(f"network {sizes} (P={hw.lanes}, U={hw.neuron_lanes}) does not fit the "
                         f"{board.device} of {board.name}: " + " | ".join(problems))


class BoardTop(wiring.Component):
    """The core, a UART receiver/transmitter, the host link (docs/uart-protocol.md) and, with
    ``flash``, the flash loader that feeds the model image's CONFIG commands to the host
    link's decoder after reset (hdl/flash_loader.py, docs/board.md); the host's commands wait
    in the link's receive FIFO until it has finished.

    Ports
    -----
    rx : In(1)
        UART line from the host (idle high).
    tx : Out(1)
        UART line to the host.
    busy : Out(1)
        The core is running an inference (for an LED).
    error : Out(2)
        The core's sticky error bits of the last inference (for LEDs).
    boot_ok : Out(1)
        The model was loaded from the flash (an LED).
    boot_fail : Out(1)
        The flash image was refused (another format, build key or a wrong checksum), or the
        last self-test failed (an LED; with ``boot_ok`` also on: the model was loaded but did
        not compute the golden vector's result, docs/board.md).
    flash_sck, flash_cs, flash_copi : Out(1); flash_cipo : In(1)
        With ``flash`` only: the SPI flash's pins (``flash_cs`` active high).

    ``batch_words`` (``[board] batch_event_words``; 0: none) adds the batch unit
    (hdl/batch.py): while it runs a batch it owns the core's start, event and result streams.
    ``self_test`` (``[board] self_test``) False leaves the self-test unit out (86 logic cells on
    the iCE40): the host link still takes EXPECT, and BOOT reports the self-test as NONE.
    """
    def __init__(self, bundle, hw: HardwareConfig, divisor: int, rx_depth: int = RX_FIFO_DEPTH,
                 memory_init=None, flash: FlashBoot | None = None, batch_words: int = 0,
                 self_test: bool = True):
        self.core = BSNNCore(bundle, hw, memory_init=memory_init)
        self.geom = self.core.geom
        self.divisor = divisor
        self.rx_depth = rx_depth
        self.flash = flash
        self.self_test = self_test
        self.batch_words = batch_words_check(batch_words)
        ports = {"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "error": Out(2),
                 "boot_ok": Out(1), "boot_fail": Out(1)}
        if flash is not None:
            ports.update(flash_sck=Out(1), flash_cs=Out(1), flash_copi=Out(1), flash_cipo=In(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.link = link = HostLink(self.geom, self.rx_depth, self.batch_words)
        wiring.connect(m, urx.o_data, link.i_rx)
        wiring.connect(m, link.o_tx, utx.i_data)
        if not self.batch_words:
            wiring.connect(m, link.o_config, core.i_config)
        if self.self_test:
            # The self-test watches the result records on their way to the host link.
            m.submodules.self_test = check = SelfTest(self.geom.idx_w, self.geom.v_width)
            wiring.connect(m, link.o_expect, check.i_expect)
            m.d.comb += [check.result.eq(core.o_results.payload),
                         check.result_taken.eq(core.o_results.valid & core.o_results.ready),
                         check.done.eq(core.done), check.error.eq(core.error),
                         link.boot_pending.eq(check.status == SelfTestStatus.RUNNING)]
            test_status = check.status
        else:
            m.d.comb += link.o_expect.ready.eq(1)       # (EXPECT taken and dropped)
            test_status = Const(SelfTestStatus.NONE.value, 2)
        failed = test_status == SelfTestStatus.FAILED
        if self.flash is None:
            m.d.comb += [link.boot_status.eq(Cat(Const(BootStatus.NO_LOADER, 4), test_status)),
                         self.boot_fail.eq(failed)]
        else:
            # The loader's bytes go through the host link's command decoder (CONFIG commands);
            # the host's wait in the link's receive FIFO until it has finished.
            f = self.flash
            m.submodules.flash_loader = loader = FlashLoader(self.geom, f.offset, f.half,
                                                             f.wake_cycles)
            wiring.connect(m, loader.o_data, link.i_boot)
            m.d.comb += [self.flash_sck.eq(loader.sck), self.flash_cs.eq(loader.cs),
                         self.flash_copi.eq(loader.copi), loader.cipo.eq(self.flash_cipo),
                         link.hold.eq(loader.loading),
                         link.boot_status.eq(Cat(loader.status, test_status)),
                         self.boot_ok.eq(loader.status == BootStatus.OK),
                         self.boot_fail.eq(failed | loader.status.matches(
                             BootStatus.BAD_FORMAT, BootStatus.BAD_KEY, BootStatus.BAD_CHECKSUM))]
        start = link.start
        if self.batch_words:
            # The batch unit owns the core's streams while it runs (docs/uart-protocol.md).
            m.submodules.batch = batch = BatchUnit(self.geom, self.batch_words)
            wiring.connect(m, link.o_batch_word, batch.i_word)
            wiring.connect(m, link.o_batch_run, batch.i_run)
            wiring.connect(m, batch.o_class, link.i_batch_class)
            wiring.connect(m, batch.o_done, link.i_batch_done)
            active = batch.active
            src = [link.o_events, batch.o_events]
            m.d.comb += [core.i_events.valid.eq(Mux(active, src[1].valid, src[0].valid)),
                         core.i_events.payload.eq(Mux(active, src[1].payload, src[0].payload)),
                         src[0].ready.eq(~active & core.i_events.ready),
                         src[1].ready.eq(active & core.i_events.ready)]
            dst = [link.i_results, batch.i_results]
            m.d.comb += [dst[0].valid.eq(~active & core.o_results.valid),
                         dst[1].valid.eq(active & core.o_results.valid),
                         dst[0].payload.eq(core.o_results.payload),
                         dst[1].payload.eq(core.o_results.payload),
                         core.o_results.ready.eq(Mux(active, dst[1].ready, dst[0].ready)),
                         batch.done.eq(core.done), batch.error.eq(core.error),
                         batch.time_steps.eq(core.time_steps),
                         # (no DONE frame per image of a batch)
                         link.done.eq(core.done & ~active)]
            # The host's CONFIG waits and its START is dropped while a batch runs (the core is
            # idle between two images for a cycle).
            cfg = link.o_config
            m.d.comb += [core.i_config.valid.eq(cfg.valid & ~active),
                         core.i_config.payload.eq(cfg.payload),
                         cfg.ready.eq(core.i_config.ready & ~active)]
            start = (start & ~active) | batch.start
        else:
            wiring.connect(m, link.o_events, core.i_events)
            wiring.connect(m, core.o_results, link.i_results)
            m.d.comb += link.done.eq(core.done)
        m.d.comb += [
            urx.rx.eq(self.rx), self.tx.eq(utx.tx),
            link.busy.eq(core.busy),
            link.cycles.eq(core.cycles), link.error.eq(core.error),
            link.link_status.eq(urx.overrun | (urx.frame_error << 1)),
            self.busy.eq(core.busy), self.error.eq(core.error),
        ]
        # The start pulse is registered (timing: the link's decoder state does not reach the
        # units' clear logic). The link sends nothing between START and the core's busy.
        m.d.sync += core.start.eq(start)
        return m


class _PlatformTop(Elaboratable):
    """The board top on a real board: the PLL clock domain, the UART pins and the LEDs."""
    def __init__(self, top: BoardTop, pll, target_hz: float):
        self.top = top
        self.pll = pll
        self.target_hz = target_hz

    def elaborate(self, platform):
        m = Module()
        clk = platform.request(platform.default_clk, 0, dir="-")
        # iCE40 block RAMs read as zero for some microseconds after configuration: the reset
        # is held 20 us after lock there (as amaranth's own power-on reset does, 15 us).
        por = int(20e-6 * self.pll.f_out) if isinstance(self.pll, ICE40PLL) else 16
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.submodules.clock = BoardClock(clk, self.pll, cd_sync, por_cycles=por)
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]
        if top.flash is not None:
            self._flash_pins(m, platform, top)
        leds = []
        for i in range(5):
            try:
                leds.append(platform.request("led", i, dir="-"))
            except Exception:      # a board with fewer LEDs: show what fits
                break
        # (LED_SIGNALS: the order, docs/board.md; on the iCEBreaker led 0 is red, led 1 green)
        for i, (led, name) in enumerate(zip(leds, LED_SIGNALS)):
            m.submodules[f"led{i}_buf"] = buf = io.Buffer("o", led)
            sig = top.error[int(name[-1])] if name.startswith("error") else getattr(top, name)
            m.d.comb += buf.o.eq(sig)
        return m

    @staticmethod
    def _flash_pins(m, platform, top):
        """The configuration flash: iCE40 user pins after configuration; on the ECP5 its clock
        pin is the configuration clock, reached through the USRMCLK primitive."""
        ice40 = ("spi_flash_1x", 0) in platform.resources
        flash = platform.request("spi_flash_1x" if ice40 else "spi_flash", 0, dir="-")
        for name, direction in (("cs", "o"), ("copi", "o"), ("cipo", "i"), ("wp", "o"),
                                ("hold", "o")):
            m.submodules[f"flash_{name}_buf"] = buf = io.Buffer(direction, getattr(flash, name))
            if name == "cs":
                m.d.comb += buf.o.eq(top.flash_cs)      # (the resource inverts it to CS#)
            elif name == "copi":
                m.d.comb += buf.o.eq(top.flash_copi)
            elif name == "cipo":
                m.d.comb += top.flash_cipo.eq(buf.i)
            else:
                m.d.comb += buf.o.eq(0)                 # WP#, HOLD# high (inverted resources)
        if ice40:
            m.submodules.flash_clk_buf = buf = io.Buffer("o", flash.clk)
            m.d.comb += buf.o.eq(top.flash_sck)
        else:
            m.submodules.usrmclk = Instance("USRMCLK", i_USRMCLKI=top.flash_sck,
                                            i_USRMCLKTS=0, a_keep=1)


#: The board LEDs from led 0 up, as many as the board has (iCEBreaker: 0 red, 1 green, 2-4 on
#: the snap-off LED section; ULX3S: LEDs 0-7).
LED_SIGNALS = ("boot_fail", "boot_ok", "busy", "error0", "error1")


def template_depth(family: str, width: int, depth: int) -> int:
    """``depth`` rounded up to whole block RAMs of the shape synthesis picks for ``width``
    (so that a template fills every block it occupies with random data: no block holds
    constant padding that icebram / ecpbram could match in several places)."""
    if family == "ice40":
        block = 256 if width > 8 else 512 if width > 4 else 1024 if width > 2 else 2048
    else:
        block = 512 if width > 18 else 1024 if width > 9 else 2048 if width > 4 else 4096
    return -(-max(2, depth) // block) * block


def stored_widths(geom: CoreGeometry) -> tuple:
    """Stored widths of the bias and threshold memories (whole hex digits, hdl/neuron.py)."""
    return geom.stored_bias_width, geom.stored_threshold_width


def _random_words(rng, width: int, count: int) -> list[int]:
    """``count`` uniformly random ``width``-bit words; numpy draws at most 63 bits at once, so
    wider words (``lanes`` up to 256) are put together from 32-bit pieces."""
    import numpy as np
    if width <= 63:
        return [int(x) for x in rng.integers(0, 1 << width, count, dtype=np.uint64)]
    pieces = -(-width // 32)
    mask = (1 << width) - 1
    return [sum(int(p) << (32 * i) for i, p in enumerate(row)) & mask
            for row in rng.integers(0, 1 << 32, (count, pieces), dtype=np.uint64)]


def memory_templates(geom: CoreGeometry, seed: int = 1, family: str = "ice40") -> dict:
    """Random power-up contents for the weight, bias and threshold memories (as in
    :class:`BSNNCore`'s ``memory_init``), each filling whole block RAMs: patterns that
    icebram / ecpbram can find in a bitstream and replace by a bundle's images
    (hdl/weights_patch.py)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    U = geom.neuron_lanes
    bw, tw = stored_widths(geom)
    dw = template_depth(family, geom.lanes, geom.weight_depth)
    db = template_depth(family, bw, geom.param_depth)
    dt = template_depth(family, tw, geom.param_depth)
    return {
        "weights": _random_words(rng, geom.lanes, dw),
        "bias": [[int(x) for x in rng.integers(0, 1 << bw, db)] for _ in range(U)],
        "threshold": [[int(x) for x in rng.integers(0, 1 << tw, dt)] for _ in range(U)],
    }


def board_pll(board: Board, clock_mhz: float | None = None):
    """The PLL setting of ``board`` for the core clock ``clock_mhz`` (default
    ``board.clock_mhz``): the closest output at or below it."""
    f = float(clock_mhz or board.clock_mhz) * 1e6
    return (ice40_pll if board.family == "ice40" else ecp5_pll)(board.osc_hz, f)


def platform_top(bundle, hw: HardwareConfig, board: Board, baud: int = 115200,
                 weights: str = "auto", target_mhz: float | None = None, memory_init=None,
                 clock_mhz: float | None = None, batch_words: int = 0, flash_loader: bool = True,
                 self_test: bool = True):
    """``(platform, elaboratable, hw, geom, plan)`` for building the board top of ``bundle``
    (``batch_words``: its batch memory, ``[board] batch_event_words``; ``flash_loader``:
    ``[board] flash_loader``, without it the flash pins stay unused and a model in SPRAM is
    loaded over the UART; ``self_test``: ``[board] self_test``).

    The core runs from a PLL at ``clock_mhz`` (default ``board.clock_mhz``; the UART divisor
    follows it); place-and-route is timed against ``target_mhz`` (default
    ``board.target_mhz``) on that clock, so that nextpnr reports the Fmax it can reach.
    """
    from amaranth.build import Clock, Resource

    hw, geom, plan = plan_build(bundle, hw, board, weights, batch_words)
    pll = board_pll(board, clock_mhz)
    target = float(target_mhz or board.target_mhz) * 1e6
    # nextpnr derives the PLL output's constraint from the input's: the oscillator pin is
    # constrained at target * f_in / f_out, so that the core clock is timed against `target`
    # (a goal above the clock it runs at: the reported Fmax is what the placement reaches).
    base = board.platform_class()
    resources = []
    for r in base.resources:
        if r.name == base.default_clk and r.number == 0:
            r = Resource(r.name, r.number, *r.ios, r.attrs, Clock(target * pll.f_in / pll.f_out))
        resources.append(r)
    platform = type(f"{base.__name__}_Timed", (base,), {"resources": resources})()
    top = BoardTop(bundle, hw, board_uart_divisor(board, pll.f_out, baud), memory_init=memory_init,
                   flash=FlashBoot.for_clock(board.flash_offset, pll.f_out) if flash_loader else None,
                   batch_words=batch_words, self_test=self_test)
    return platform, _PlatformTop(top, pll, target), hw, geom, plan
