"""Board tops that boot their model from the SPI flash (cocotb, behavioural W25Q128JV on the
flash pins, sim/spi_flash.py): the real bundle's flash image (hdl/flash_image.py) is loaded by
the board top's flash loader after reset, runs the image's golden vector (self-test), then an
MNIST test image goes over the UART and every record is compared with the golden model. A
corrupted image is refused (BOOT reply, LED) and the board falls back to a host load."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import load_bundle, random_bundle
from bsnn.firmware_export.events import events_from_counts, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.bitstream import board_config_path
from bsnn.hdl.board import BOARDS, FlashBoot, memory_templates, plan_build
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.flash_image import HEADER_BYTES, flash_image, self_test_vector
from bsnn.hdl.generate import config_writes
from bsnn.hdl.layouts import ResultKind
from bsnn.sim.check import compare_sample, normalize
from bsnn.sim.cocotb_board import CLOCK_PERIOD_NS
from tests.sim.simulators import require_simulator
from tests.sim.test_board_uart import DIVISOR, REPO, _build, _run

CLOCK_HZ = 1e9 / CLOCK_PERIOD_NS   # the cocotb clock of sim/cocotb_board.py
#: SCK in simulation: the flash's own limit for READ (0x03), 50 MHz (the boards use 25 MHz).
SCK_MAX_HZ = 50e6
IMAGES = 1                # MNIST test images after the boot


#: The families of the boards' synthesis (their gate-level netlists).
FAMILY = {"icebreaker": "ice40", "ulx3s-85f": "ecp5"}


def _board_build(board: str, gates: bool = False, model: str = "default"):
    """``models/default`` as ``bsnn bitstream`` builds it for ``board`` (its TOML), with the
    random template contents of the bitstream flow in the weight, bias and threshold memories:
    the model is in the core only if it came from the flash (or the host). Verilator: the only
    full-size builds of each board top in the tests (the iCEBreaker's also carries the UART test
    of ``models/default`` on the board's core configuration); ``gates``: the netlist of the
    board's synthesis (Yosys, the board builds' script) with the family's cell models."""
    require_simulator("verilator")
    bundle = load_bundle(REPO / "models" / model)
    hw = HardwareConfig.from_toml(board_config_path(board))
    b = BOARDS[board]
    hw, geom, _ = plan_build(bundle, hw, b, "auto")
    flash = FlashBoot.for_clock(b.flash_offset, CLOCK_HZ, SCK_MAX_HZ)
    runner, bdir, geom = _build(bundle, hw, "verilator", flash=flash,
                                memory_init=memory_templates(geom, 1, b.family),
                                post_synthesis=FAMILY[board] if gates else None)
    return bundle, geom, flash, runner, bdir


def _mnist_samples(bundle):
    from bsnn.training.data import load_encoded
    data = load_encoded(bundle, "mnist", "test", IMAGES)
    rng = np.random.default_rng(0)
    samples = [[[list(e) for e in step] for step in events_from_counts(data.on, data.off, k, rng)]
               for k in range(IMAGES)]
    return data, samples


def _check_samples(bundle, data, out):
    gold = run_golden(bundle, data.on, data.off)
    for k in range(IMAGES):
        assert compare_sample(bundle, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(bundle, gold, k, out["samples"][k])


def _self_test_ran(out, vector, status="PASSED"):
    """The image's golden vector ran at boot: its records (trace spikes aside) are the golden
    model's, and the BOOT reply carries the self-test's verdict."""
    got = [normalize(r) for r in out["self_test_records"] if r[0] != ResultKind.SPIKE]
    assert got == [normalize(r) for r in vector.records]
    assert out["self_test"] == status


def _corrupted(bundle, geom):
    img = bytearray(flash_image(bundle, geom))
    img[HEADER_BYTES + len(img) // 3] ^= 0x04            # one bit of one command
    return bytes(img)


@pytest.mark.rtl
@pytest.mark.parametrize("gates", [False, True], ids=["rtl", "gate-level"])
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_board_boots_model_from_flash(board, gates):
    """The board's top as ``bsnn bitstream`` builds it for ``models/default`` (its TOML,
    template memories), powered up with the real bundle's image in the flash, a golden vector
    (an MNIST test image) at its end: no LED during the load, one wake-up and two reads at the
    board's offset, the self-test's records as the golden model's, BOOT = OK and self-test
    PASSED after it (led 1 only), then an MNIST test image classified record for record as
    the golden model (which also covers
    ``models/default`` on the iCEBreaker's core configuration through the UART). On the ULX3S
    top (the smaller image: 8-byte commands, 16-bit addresses, 32-bit words) a second power-up
    of the same build with one bit of the image flipped: BOOT = BAD_CHECKSUM (led 0) after the
    checking read alone, nothing reaching the core. The same at gate level: the netlist of the
    board's synthesis (Yosys' cell models; on the ECP5 our block RAM model, whose own test is
    tests/sim/test_ecp5_block_ram_model.py)."""
    bundle, geom, flash, runner, bdir = _board_build(board, gates)
    data, samples = _mnist_samples(bundle)
    vector = self_test_vector(bundle, data.on, data.off, 0)
    off = BOARDS[board].flash_offset
    job = {"build_key": geom.key(), "divisor": DIVISOR, "samples": samples,
           "flash": {"image": flash_image(bundle, geom, vector).hex(), "offset": flash.offset},
           "timeout_cycles": 4_000_000}
    out = _run(runner, bdir, job)
    assert out["flash"]["violations"] == [] and out["uart_frame_errors"] == 0
    assert out["boot_leds_loading"] == [0, 0]
    assert out["boot"] == "OK" and out["boot_leds"] == [1, 0]
    _self_test_ran(out, vector)
    assert [(op, addr) for _, op, addr in out["flash"]["commands"]] == \
        [(0xAB, None), (0x03, off), (0x03, off)]
    _check_samples(bundle, data, out)
    if board != "ulx3s-85f":
        return
    job.update(samples=[], flash={"image": _corrupted(bundle, geom).hex(), "offset": flash.offset})
    out = _run(runner, bdir, job)
    assert out["boot"] == "BAD_CHECKSUM" and out["boot_leds"] == [0, 1]
    assert [op for _, op, _ in out["flash"]["commands"]] == [0xAB, 0x03]
    assert out["flash"]["violations"] == [] and out["status"]["protocol_error"] == 0


@pytest.mark.rtl
def test_icebreaker_mnist_spram_build_boots_from_flash():
    """The iCEBreaker's build of the trained MNIST model (``models/mnist``: 784-400-400-400-10,
    weights in SPRAM, which a bitstream cannot initialise, so the model can only come from the
    flash or the host), RTL with Yosys' SB_SPRAM256KA model: its 577 KB image boots from the
    flash model in about 21 million cycles (a minute or two on Verilator), the golden vector's
    self-test passes and an MNIST test image is classified record for record as the golden
    model."""
    bundle, geom, flash, runner, bdir = _board_build("icebreaker", model="mnist")
    # the weights are in SPRAM (instances besides the model's own module)
    assert (bdir / "bsnn_board.v").read_text().count("SB_SPRAM256KA ") >= 2
    data, samples = _mnist_samples(bundle)
    vector = self_test_vector(bundle, data.on, data.off, 0)
    image = flash_image(bundle, geom, vector)
    assert len(image) > 500_000
    job = {"build_key": geom.key(), "divisor": DIVISOR, "samples": samples,
           "flash": {"image": image.hex(), "offset": flash.offset}, "timeout_cycles": 40_000_000}
    out = _run(runner, bdir, job)
    assert out["flash"]["violations"] == [] and out["uart_frame_errors"] == 0
    assert out["boot"] == "OK" and out["boot_leds"] == [1, 0]
    assert out["boot_cycles"] > 8 * len(image)          # every byte clocked in (twice)
    _self_test_ran(out, vector)
    _check_samples(bundle, data, out)


#: The networks of the small SPRAM builds (one build key).
SMALL_SPRAM_NETWORK = dict(sizes=[10, 7, 4], v_width=9, c_width=7, bias_width=4,
                           max_input_events=8, time_steps=2)


def _small_spram_build(seed, post_synthesis=None):
    """A small SPRAM-weight iCE40 build from bundle A and bundle B of the same build key (the
    SPRAM has no initial contents: the weights come from the flash or the host only)."""
    rng = np.random.default_rng(seed)
    a, b = random_bundle(rng, **SMALL_SPRAM_NETWORK), random_bundle(rng, **SMALL_SPRAM_NETWORK)
    hw = HardwareConfig(lanes=4, neuron_pipeline="long", weight_memory="spram")
    flash = FlashBoot.for_clock(BOARDS["icebreaker"].flash_offset, CLOCK_HZ, SCK_MAX_HZ)
    runner, bdir, geom = _build(a, hw, "icarus", post_synthesis=post_synthesis, flash=flash)
    on, off = random_counts(b, 2, rng)
    samples = [[[list(e) for e in step] for step in events_from_counts(on, off, k, rng)]
               for k in range(2)]
    return b, runner, bdir, geom, flash, on, off, samples


@pytest.mark.rtl
def test_spram_board_top_refuses_a_corrupted_image_then_host_loads():
    """Icarus, SPRAM weights (Yosys' SB_SPRAM256KA model, no initial contents): a corrupted
    image of bundle B is refused (no self-test runs), B is loaded over the UART instead, the
    host's self-test of B passes and the samples match B's golden model (the boot itself: the
    gate-level test below)."""
    require_simulator("icarus")
    b, runner, bdir, geom, flash, on, off, samples = _small_spram_build(13)
    vector = self_test_vector(b, on, off, 1)
    job = {"build_key": geom.key(), "divisor": DIVISOR, "samples": samples,
           "flash": {"image": _corrupted(b, geom).hex(), "offset": flash.offset},
           "config_writes": [list(w) for w in config_writes(b, build=geom)],
           "self_tests": [{"steps": vector.steps, "signature": vector.signature}]}
    out = _run(runner, bdir, job)
    assert out["flash"]["violations"] == [] and out["uart_frame_errors"] == 0
    assert out["boot"] == "BAD_CHECKSUM" and out["boot_leds"] == [0, 1]
    assert out["self_test"] == "NONE" and out["self_test_records"] is None
    # The host's self-test of the loaded bundle passes (the refused image keeps led 0 on).
    [test] = out["host_self_tests"]
    assert test["status"] == "PASSED" and test["leds"] == [0, 1]
    gold = run_golden(b, on, off)
    for k in range(2):
        assert compare_sample(b, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(b, gold, k, out["samples"][k])


@pytest.mark.rtl
def test_board_boots_from_flash_gate_level_after_ice40_synthesis():
    """The synthesized iCE40 netlist of a board top with the flash loader (Yosys' iCE40 mapping
    with the board builds' one-hot state machines, whose initial values are dropped, so the
    reset must set them; Yosys' cell models, SPRAM weights), built from bundle A: it boots
    bundle B's image (same build key) from the flash model and runs its golden vector (records
    as B's golden model, self-test PASSED, led 1 only); the host then loads bundle C over the
    UART, runs a self-test with a wrong signature (FAILED: leds 0 and 1 both on, the model is
    in but computed something else) and C's samples, which match C's golden model."""
    require_simulator("icarus")
    b, runner, bdir, geom, flash, on, off, _ = _small_spram_build(11, post_synthesis="ice40")
    vector = self_test_vector(b, on, off, 0)
    rng = np.random.default_rng(12)
    c = random_bundle(rng, **SMALL_SPRAM_NETWORK)
    c_on, c_off = random_counts(c, 2, rng)
    c_vector = self_test_vector(c, c_on, c_off, 1)
    job = {"build_key": geom.key(), "divisor": DIVISOR,
           "flash": {"image": flash_image(b, geom, vector).hex(), "offset": flash.offset},
           "config_writes": [list(w) for w in config_writes(c, build=geom)],
           "self_tests": [{"steps": c_vector.steps, "signature": c_vector.signature ^ 1}],
           "samples": [[[list(e) for e in step] for step in events_from_counts(c_on, c_off, k, rng)]
                       for k in range(2)]}
    out = _run(runner, bdir, job)
    assert out["flash"]["violations"] == [] and out["uart_frame_errors"] == 0
    assert out["boot"] == "OK" and out["boot_leds"] == [1, 0]
    _self_test_ran(out, vector)
    [test] = out["host_self_tests"]
    assert test["status"] == "FAILED" and test["leds"] == [1, 1]
    gold = run_golden(c, c_on, c_off)
    for k in range(2):
        assert compare_sample(c, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(c, gold, k, out["samples"][k])
