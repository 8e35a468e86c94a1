"""Board tops that boot their model from the SPI flash (cocotb, behavioural W25Q128JV on the
flash pins, sim/spi_flash.py): the real bundle's flash image (hdl/flash_image.py) is loaded by
the board top's flash loader after reset, then MNIST test images go over the UART and every
record is compared with the golden model. A corrupted image is refused (BOOT reply, LED) and
the board falls back to a host load."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import load_bundle
from bsnn.firmware_export.events import events_from_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.bitstream import board_config_path
from bsnn.hdl.board import BOARDS, FlashBoot, memory_templates, plan_build
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.flash_image import HEADER_BYTES, flash_image
from bsnn.hdl.generate import config_writes
from bsnn.sim.check import compare_sample
from tests.sim.simulators import require_simulator
from tests.sim.test_board_uart import DIVISOR, REPO, _build, _run

CLOCK_HZ = 100e6          # the cocotb clock of sim/cocotb_board.py (10 ns)
#: SCK in simulation: the flash's own limit for READ (0x03), 50 MHz (the boards use 25 MHz).
SCK_MAX_HZ = 50e6
IMAGES = 2                # MNIST test images per run


def _board_build(board: str, weights=None):
    """``models/default`` as ``bsnn bitstream`` builds it for ``board`` (its TOML), with the
    random template contents of the bitstream flow in the weight, bias and threshold memories:
    the model is in the core only if it came from the flash (or the host)."""
    bundle = load_bundle(REPO / "models" / "default")
    hw = HardwareConfig.from_toml(board_config_path(board))
    b = BOARDS[board]
    hw, geom, _ = plan_build(bundle, hw, b, weights or "auto")
    flash = FlashBoot.for_clock(b.flash_offset, CLOCK_HZ, SCK_MAX_HZ)
    return bundle, hw, geom, flash, memory_templates(geom, 1, b.family)


def _mnist_samples(bundle):
    from bsnn.training.data import load_encoded
    data = load_encoded(bundle, "mnist", "test", IMAGES)
    rng = np.random.default_rng(0)
    samples = [[[list(e) for e in step] for step in events_from_counts(data.on, data.off, k, rng)]
               for k in range(IMAGES)]
    return data, samples


def _boot_run(board, simulator, image, host_load=False, weights=None):
    require_simulator(simulator)
    bundle, hw, geom, flash, templates = _board_build(board, weights)
    runner, bdir, geom = _build(bundle, hw, simulator, flash=flash, memory_init=templates)
    data, samples = _mnist_samples(bundle)
    job = {"build_key": geom.key(), "divisor": DIVISOR, "samples": samples,
           "flash": {"image": image(bundle, geom).hex(), "offset": flash.offset},
           "timeout_cycles": 4_000_000}
    if host_load:
        job["config_writes"] = [list(w) for w in config_writes(bundle, build=geom)]
    out = _run(runner, bdir, job)
    assert out["flash"]["violations"] == []
    assert out["uart_frame_errors"] == 0
    return bundle, data, out


def _check_samples(bundle, data, out):
    gold = run_golden(bundle, data.on, data.off)
    for k in range(IMAGES):
        assert compare_sample(bundle, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(bundle, gold, k, out["samples"][k])


@pytest.mark.rtl
@pytest.mark.parametrize("board,simulator,weights", [
    ("icebreaker", "verilator", "spram"),   # SPRAM weights: nothing in the bitstream
    ("icebreaker", "icarus", None),         # the board's own choice (block RAM for this model)
    ("ulx3s-85f", "verilator", None),
])
def test_board_boots_model_from_flash(board, simulator, weights):
    bundle, data, out = _boot_run(board, simulator, flash_image, weights=weights)
    assert out["boot_during"] == "LOADING"
    assert out["boot"] == "OK" and out["boot_leds"] == [1, 0]
    ops = [(op, addr) for _, op, addr in out["flash"]["commands"]]
    off = BOARDS[board].flash_offset
    assert ops == [(0xAB, None), (0x03, off), (0x03, off + HEADER_BYTES)]
    _check_samples(bundle, data, out)


def _corrupted(bundle, geom):
    img = bytearray(flash_image(bundle, geom))
    img[HEADER_BYTES + len(img) // 3] ^= 0x04            # one bit of one weight word
    return bytes(img)


@pytest.mark.rtl
@pytest.mark.parametrize("board,simulator", [("icebreaker", "verilator"), ("ulx3s-85f", "icarus")])
def test_board_refuses_a_corrupted_image_and_waits_for_the_host(board, simulator):
    """One flipped bit: BAD_CHECKSUM over the UART, the red LED, nothing written (the check
    reads the whole payload before the loading read); the host then loads the bundle over the
    UART and the samples match."""
    bundle, data, out = _boot_run(board, simulator, _corrupted, host_load=True)
    assert out["boot"] == "BAD_CHECKSUM" and out["boot_leds"] == [0, 1]
    assert [op for _, op, _ in out["flash"]["commands"]] == [0xAB, 0x03]
    _check_samples(bundle, data, out)
