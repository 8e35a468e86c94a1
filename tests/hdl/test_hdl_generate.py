"""Generation: Verilog, memory images, manifest, config writes, build key; lint of the output."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.hdl.config import BuildMismatch, CoreGeometry, HardwareConfig, build_key, check_fits
from bsnn.hdl.generate import config_writes, generate
from bsnn.hdl.images import layer_mode_word, weight_words
from bsnn.hdl.layouts import ConfigTarget, GlobalAddress
from bsnn.hdl.weights import WeightMemory

from hdl_testutil import run_sim, stream_put

ROOT = Path(__file__).resolve().parents[2]


def test_weight_words_bit_order_asymmetric():
    rng = np.random.default_rng(0)
    bundle = random_bundle(rng, sizes=[3, 10, 2])
    w = np.zeros((3, 10), dtype=np.uint8)
    w[0, 0] = 1          # source 0 -> neuron 0: word 0, bit 0
    w[1, 4] = 1          # source 1 -> neuron 4: chunk 1 (P = 4), bit 0
    w[2, 9] = 1          # source 2 -> neuron 9: chunk 2, bit 1
    w[2, 3] = 1          # source 2 -> neuron 3: chunk 0, bit 3
    bundle.weights[0] = w
    bundle.weights[1] = np.zeros((10, 2), dtype=np.uint8)
    bundle.weights[1][9, 1] = 1
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4))
    words = weight_words(bundle, g)
    assert g.chunks == (3, 1) and g.weight_base == (0, 9)
    assert words[:9] == [0b0001, 0, 0, 0, 0b0001, 0, 0b1000, 0, 0b0010]
    assert words[9:] == [0] * 9 + [0b10]


def test_layer_mode_packing():
    spec = LayerSpec(size=1, current=True, leak_v=5, leak_c=63, reset="none", fire_once=True)
    assert layer_mode_word(spec) == 1 | 2 | (2 << 2) | (5 << 4) | (63 << 10)


def test_config_writes_round_trip_and_fit():
    rng = np.random.default_rng(1)
    bundle = random_bundle(rng, sizes=[5, 9, 3], bias_width=6)
    hw = HardwareConfig(lanes=4)
    g = CoreGeometry.from_bundle(bundle, hw)
    writes = config_writes(bundle, hw)
    words = {a: d for t, a, d in writes if t == ConfigTarget.WEIGHTS}
    # Rebuild the weight matrices from the word image by the documented address rule.
    for l, w in enumerate(bundle.weights):
        n_in, n_out = w.shape
        back = np.zeros_like(w)
        for i in range(n_in):
            for j in range(n_out):
                word = words[g.weight_base[l] + i * g.chunks[l] + j // 4]
                back[i, j] = (word >> (j % 4)) & 1
        assert np.array_equal(back, w)
    bias = [d for t, a, d in writes if t == ConfigTarget.BIAS]
    assert [b - 64 if b >= 32 else b for b in bias] == [int(x) for b in bundle.bias for x in b]
    glob = {a: d for t, a, d in writes if t == ConfigTarget.GLOBAL}
    assert glob[GlobalAddress.TIME_STEPS] == bundle.time_steps
    assert glob[GlobalAddress.MAX_INPUT_EVENTS] == bundle.max_input_events


def test_build_key_and_mismatch_messages():
    rng = np.random.default_rng(2)
    a = random_bundle(rng, sizes=[5, 9, 3], v_width=10, c_width=8, bias_width=6)
    key = build_key(a, HardwareConfig(lanes=4, max_input_events=20))
    assert key == {"sizes": [5, 9, 3], "v_width": 10, "c_width": 8, "bias_width": 6, "lanes": 4,
                   "trace": True, "max_input_events": 20, "neuron_lanes": 1,
                   "neuron_pipeline": "short", "state_current": True, "state_fired": True}
    ok = random_bundle(rng, sizes=[5, 9, 3], v_width=10, c_width=8, bias_width=4)
    check_fits(ok, key)
    bad = random_bundle(rng, sizes=[5, 8, 3], v_width=11, c_width=8, bias_width=7,
                        max_input_events=21)
    with pytest.raises(BuildMismatch) as exc:
        config_writes(bad, build=key)
    msg = str(exc.value)
    for part in ("sizes [5, 8, 3] != build's [5, 9, 3]", "v_width 11 != build's 10",
                 "bias_width 7 > build's 6", "max_input_events 21 > build's capacity 20"):
        assert part in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match="lanes"):
        HardwareConfig(lanes=0)


def test_generate_writes_verilog_images_manifest(tmp_path):
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, sizes=[6, 5, 3])
    hw = HardwareConfig(lanes=4)
    paths = generate(bundle, hw, tmp_path)
    assert set(paths) == {"bsnn_core.v", "weights.hex", "bias.hex", "threshold.hex",
                          "layer_mode.hex", "global.hex", "hardware.json"}
    text = (tmp_path / "bsnn_core.v").read_text()
    assert "module bsnn_core(" in text
    for port in ("i_events__payload", "i_events__valid", "i_events__ready", "o_results__payload",
                 "i_config__payload", "start", "busy", "done", "cycles", "error", "clk", "rst"):
        assert port in text
    manifest = json.loads((tmp_path / "hardware.json").read_text())
    assert manifest["build_key"] == build_key(bundle, hw)
    check_fits(bundle, manifest)
    g = CoreGeometry.from_bundle(bundle, hw)
    lines = (tmp_path / "weights.hex").read_text().split()
    assert [int(x, 16) for x in lines] == weight_words(bundle, g)
    bias = [int(x, 16) for x in (tmp_path / "bias.hex").read_text().split()]
    bw = bundle.bias_width
    assert [b - (1 << bw) if b >> (bw - 1) else b for b in bias] == \
        [int(x) for b in bundle.bias for x in b]
    # Reproducible output.
    again = tmp_path / "again"
    generate(bundle, hw, again)
    assert (again / "bsnn_core.v").read_text() == text


@pytest.mark.parametrize("bank_words", [0, 4])
def test_weight_memory_init_write_read(bank_words):
    rng = np.random.default_rng(4)
    bundle = random_bundle(rng, sizes=[4, 6])
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4))
    init = weight_words(bundle, g)
    dut = WeightMemory(g, init=init, bank_words=bank_words)
    got = {}

    async def read(ctx, addrs):
        # One address per cycle; the word of the address issued three cycles earlier comes out.
        out = []
        for k, a in enumerate(list(addrs) + [0, 0, 0]):
            ctx.set(dut.read.addr, a)
            ctx.set(dut.read.en, 1)
            await ctx.tick()
            if k >= 2:
                out.append(ctx.get(dut.read.data))
        return out[:len(addrs)]

    async def bench(ctx):
        got["init"] = await read(ctx, range(g.weight_depth))
        await stream_put(ctx, dut.i_write, [
            {"target": ConfigTarget.WEIGHTS, "address": 3, "data": 0b1010},
            {"target": ConfigTarget.BIAS, "address": 4, "data": 0b1111},        # other target
            {"target": ConfigTarget.WEIGHTS, "address": g.weight_depth, "data": 0b1111}])
        got["after"] = await read(ctx, (3, 4, 0))

    run_sim(dut, bench, deadline_cycles=1000)
    assert got["init"] == init
    assert got["after"] == [0b1010, init[4], init[0]]


@pytest.mark.parametrize("sizes,lanes,trace", [([10, 7, 5], 4, True), ([3, 1], 1, False)])
def test_verilator_lint_clean_with_waivers(tmp_path, sizes, lanes, trace):
    from bsnn.sim.lint import lint
    from bsnn.sim.toolchain import availability
    reason = availability("verilator")
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"verilator is required in CI: {reason}")
        pytest.skip(reason)
    rng = np.random.default_rng(5)
    bundle = random_bundle(rng, sizes=sizes)
    generate(bundle, HardwareConfig(lanes=lanes, trace=trace), tmp_path)
    code, out = lint(tmp_path / "bsnn_core.v")
    assert code == 0 and "%Warning" not in out and "%Error" not in out, out

