"""Flash image (hdl/flash_image.py) and flash loader (hdl/flash_loader.py) against the
behavioural SPI flash (sim/spi_flash.py), in the Amaranth simulator with random stalls on the
byte stream to the host link."""
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.flash_image import (HEADER_BYTES, ImageError, flash_image, key_hash,
                                  max_payload_bytes, parse_image)
from bsnn.hdl.flash_loader import BootStatus, FlashLoader
from bsnn.hdl.images import config_writes_for
from bsnn.sim.spi_flash import T_RES1_NS, SPIFlashModel

PERIOD_NS = 10          # the loader's clock in these tests (100 MHz)
OFFSET = 0x100000


def _bundle(seed=1, **kw):
    rng = np.random.default_rng(seed)
    args = dict(sizes=[12, 9, 5], v_width=9, c_width=8, bias_width=5, max_input_events=8,
                time_steps=3)
    args.update(kw)
    return random_bundle(rng, **args)


def _geom(bundle, **hw):
    return CoreGeometry.from_bundle(bundle, HardwareConfig(**{"lanes": 4, **hw}))


def test_image_round_trip_and_refusals():
    b = _bundle()
    g = _geom(b)
    img = flash_image(b, g)
    assert img[:4] == b"BSNF" and int.from_bytes(img[8:12], "little") == key_hash(g)
    n = int.from_bytes(img[12:16], "little")
    assert n == len(img) - HEADER_BYTES - 4 <= max_payload_bytes(g)
    assert int.from_bytes(img[-4:], "little") == zlib.crc32(img[HEADER_BYTES:-4])
    assert parse_image(img, g).writes == config_writes_for(b, g)
    # The payload is the host's CONFIG commands, byte for byte.
    from bsnn.hdl.hostlink import config_frame
    assert img[HEADER_BYTES:-4] == b"".join(config_frame(g, *w) for w in config_writes_for(b, g))
    bad = bytearray(img)
    bad[HEADER_BYTES + 3] ^= 0x10
    with pytest.raises(ImageError, match="checksum"):
        parse_image(bytes(bad), g)
    other = _geom(b, lanes=8)
    with pytest.raises(ImageError, match="build key"):
        parse_image(img, other)
    with pytest.raises(ImageError, match="magic"):
        parse_image(b"\xff" * 64, g)


def test_self_test_section_round_trip_and_refusals():
    """A golden vector after the CONFIG commands: EXPECT, START, EVENTs, as the host sends them;
    the parser gives them back and refuses a payload that is neither."""
    from bsnn.firmware_export.events import random_counts
    from bsnn.hdl.flash_image import SELF_TEST_MAX_BYTES, self_test_vector
    from bsnn.hdl.hostlink import event_frame, expect_frame, inference_frames
    from bsnn.hdl.selftest import expect_word
    b = _bundle()
    g = _geom(b)
    on, off = random_counts(b, 3, np.random.default_rng(4))
    vector = self_test_vector(b, on, off, 2)
    img = flash_image(b, g, vector)
    bare = flash_image(b, g)
    tail = expect_frame(expect_word(vector.signature)) + inference_frames(g, vector.steps)
    assert img[HEADER_BYTES:-4] == bare[HEADER_BYTES:-4] + tail
    parsed = parse_image(img, g)
    assert parsed.writes == config_writes_for(b, g)
    assert parsed.expect == expect_word(vector.signature) and parsed.steps == vector.steps
    assert len(vector.steps) == b.time_steps
    assert len(tail) + len(bare) - HEADER_BYTES - 4 <= max_payload_bytes(g)
    assert SELF_TEST_MAX_BYTES >= len(tail)

    def reframed(payload):
        head = bytearray(img[:HEADER_BYTES])
        head[12:16] = len(payload).to_bytes(4, "little")
        return bytes(head) + payload + zlib.crc32(payload).to_bytes(4, "little")

    payload = img[HEADER_BYTES:-4]
    start = len(bare) - HEADER_BYTES - 4
    with pytest.raises(ImageError, match="neither a CONFIG command nor a self-test"):
        parse_image(reframed(payload[:start] + bytes([0x05]) + payload[start + 1:]), g)
    with pytest.raises(ImageError, match="events after the last end of step"):
        parse_image(reframed(payload + event_frame(g, 3, 1, False)), g)


def _run_loader(image_bytes, geom, rng, p_ready=0.5, half=1, powered_down=True,
                deadline=400_000, offset=OFFSET):
    wake = -(-T_RES1_NS // PERIOD_NS)
    dut = FlashLoader(geom, offset, half, wake)
    flash = SPIFlashModel.with_image(image_bytes, offset, powered_down=powered_down)
    data, state = bytearray(), {}

    async def flash_pins(ctx):
        cycle = 0
        async for _, _, cs, sck, copi in ctx.tick().sample(dut.cs, dut.sck, dut.copi):
            cycle += 1
            t = cycle * PERIOD_NS
            flash.set_cs_n(0 if cs else 1, t)
            flash.set_sck(sck, copi, t)
            ctx.set(dut.cipo, flash.cipo)

    async def sink(ctx):
        cycles = 0
        while True:
            ready = rng.random() < p_ready
            ctx.set(dut.o_data.ready, ready)
            _, _, valid, payload, loading, status = await ctx.tick().sample(
                dut.o_data.valid, dut.o_data.payload, dut.loading, dut.status)
            cycles += 1
            if valid and ready:
                assert loading
                data.append(payload)
            if not loading:
                state["status"] = status
                state["cycles"] = cycles
                return
            assert cycles < deadline, "the loader did not finish"

    sim = Simulator(dut)
    sim.add_clock(PERIOD_NS * 1e-9)
    sim.add_testbench(flash_pins, background=True)
    sim.add_testbench(sink)
    sim.run()
    return state["status"], bytes(data), flash, state["cycles"]


@pytest.mark.parametrize("half", [1, 2])
def test_loader_loads_every_write_with_stalls(half):
    b = _bundle(2)
    g = _geom(b)
    img = flash_image(b, g)
    status, data, flash, cycles = _run_loader(img, g, np.random.default_rng(half), half=half)
    assert status == BootStatus.OK
    assert data == img[HEADER_BYTES:-4]
    assert parse_image(img[:HEADER_BYTES] + data + img[-4:], g).writes == config_writes_for(b, g)
    assert flash.violations == []
    # Woken first (0xAB), then the checking read, tRES1 again, the loading read.
    ops = [(op, addr) for _, op, addr in flash.commands]
    assert ops == [(0xAB, None), (0x03, OFFSET), (0x03, OFFSET)]
    assert flash.commands[1][0] - flash.commands[0][0] >= T_RES1_NS
    assert flash.bytes_read == 2 * len(img)


def test_loader_refuses_a_corrupted_payload_without_writing():
    b = _bundle(3)
    g = _geom(b)
    img = bytearray(flash_image(b, g))
    img[len(img) // 2] ^= 0x01
    status, data, flash, _ = _run_loader(bytes(img), g, np.random.default_rng(0))
    assert status == BootStatus.BAD_CHECKSUM and data == b""
    assert flash.violations == [] and [op for _, op, _ in flash.commands] == [0xAB, 0x03]


def test_loader_refuses_another_build_and_no_image():
    b = _bundle(4)
    g = _geom(b)
    other = flash_image(b, _geom(b, lanes=8))
    status, data, flash, _ = _run_loader(other, g, np.random.default_rng(0))
    assert status == BootStatus.BAD_KEY and data == b""
    # The read stopped at the key's first differing byte.
    assert 8 < flash.bytes_read <= 12
    status, data, flash, _ = _run_loader(b"", g, np.random.default_rng(0))
    assert status == BootStatus.NO_IMAGE and data == b"" and flash.bytes_read == 1
    for pos, value in ((4, 1), (6, 1)):                   # another format version; reserved
        img = bytearray(flash_image(b, g))
        img[pos] = value
        status, data, _, _ = _run_loader(bytes(img), g, np.random.default_rng(0))
        assert status == BootStatus.BAD_FORMAT and data == b""
    for length in (max_payload_bytes(g) + 1, 0):          # out of range
        img = bytearray(flash_image(b, g))
        img[12:16] = length.to_bytes(4, "little")
        with pytest.raises(ImageError, match="length"):
            parse_image(bytes(img), g)
        status, data, _, _ = _run_loader(bytes(img), g, np.random.default_rng(0))
        assert status == BootStatus.BAD_FORMAT and data == b""


def test_flash_model_needs_the_wake_up():
    """The behavioural flash ignores a read while powered down: a loader that skipped the
    release command (or its tRES1) would find no image."""
    b = _bundle(5)
    g = _geom(b)
    flash = SPIFlashModel.with_image(flash_image(b, g), 0)
    for t, bit in enumerate([0, 0, 0, 0, 0, 0, 1, 1] + [0] * 24 + [0] * 8):   # READ at 0
        flash.set_cs_n(0, 0)
        flash.set_sck(1, bit, 100 + 40 * t)
        flash.set_sck(0, 0, 120 + 40 * t)
    assert flash.bytes_read == 0 and flash.cipo == 1


def test_board_doc_states_the_code_s_numbers():
    """docs/board.md: offsets, header, BOOT codes, LED order, SCK limit and tRES1 as the code
    has them."""
    import re
    from pathlib import Path

    from bsnn.hdl.board import BOARDS, FLASH_SCK_MAX_HZ, LED_SIGNALS
    from bsnn.hdl.flash_image import CRC_BYTES, FORMAT_VERSION, MAGIC
    from bsnn.hdl.flash_loader import T_RES1_S
    from bsnn.hdl.hostlink import Opcode, Reply
    doc = (Path(__file__).resolve().parents[2] / "docs" / "board.md").read_text()
    assert f"`0x{BOARDS['icebreaker'].flash_offset:06x}`" in doc
    assert BOARDS["ulx3s-85f"].flash_offset == BOARDS["ulx3s-25f"].flash_offset
    assert f"`0x{BOARDS['ulx3s-85f'].flash_offset:06x}`" in doc
    assert f"The header is {HEADER_BYTES} bytes" in doc
    assert f"magic `{MAGIC.decode()}`" in doc and f"format version {FORMAT_VERSION}" in doc
    assert f"the payload's CRC-32 ({CRC_BYTES} bytes" in doc
    codes = dict((int(c), n) for c, n in re.findall(r"^\| (\d) \| (\w+) \|", doc, re.M))
    assert codes == {s.value: s.name for s in BootStatus}
    assert f"`0x{Opcode.BOOT:02x}` -> `0x{Reply.BOOT:02X}`" in doc
    leds = re.findall(r"^\| led (\d)", doc, re.M)
    assert [int(x) for x in leds] == [0, 1, 2, 3]       # led 3, led 4 share a row
    assert LED_SIGNALS == ("boot_fail", "boot_ok", "busy", "error0", "error1")
    assert f"SCK at most {FLASH_SCK_MAX_HZ / 1e6:.0f} MHz" in doc
    assert f"tRES1\n({T_RES1_S * 1e6:.0f} us)" in doc or f"tRES1 ({T_RES1_S * 1e6:.0f} us)" in doc


def test_board_doc_image_size_of_the_mnist_model():
    from pathlib import Path

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.bitstream import board_image
    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "board.md").read_text()
    from bsnn.hdl.board import FlashBoot, board_pll
    from bsnn.hdl.flash_image import CRC_BYTES
    from bsnn.hdl.hostlink import frame_sizes
    text = " ".join(doc.split())
    from bsnn.board import golden_vector
    for model in ("mnist", "default"):
        bundle = load_bundle(repo / "models" / model)
        vector, _ = golden_vector(bundle)               # what bsnn flash-image puts in
        board, geom, bare = board_image("icebreaker", bundle)
        image = board_image("icebreaker", bundle, self_test=vector)[2]
        writes = len(config_writes_for(bundle, geom))
        sz = frame_sizes(geom)
        payload = writes * (2 + sz["A"] + sz["D"])
        assert len(bare) == HEADER_BYTES + payload + CRC_BYTES
        assert len(image) == len(bare) + len(vector.commands(geom))
        if model == "default":
            assert f"`models/default`: {writes:,} writes and random input counts, as it was " \
                   f"trained on nothing: {len(image):,} bytes, {len(bare):,} without" in text
            continue
        events = sum(map(len, vector.steps))
        assert f"{writes:,} writes and MNIST test image 0 ({events} input events, " \
               f"{len(vector.commands(geom))} bytes), a {len(image):,}-byte image " \
               f"({len(bare):,} without the self-test" in text
        clock = board_pll(board).f_out
        flash = FlashBoot.for_clock(board.flash_offset, clock)
        per_byte = 16 * flash.half + 2
        seconds = 2 * (len(image) + 4) * per_byte / clock
        assert f"2 x {len(image) + 4:,} bytes (command and image) at {per_byte} core cycles " \
               f"per byte, about {seconds:.2f} s" in text
