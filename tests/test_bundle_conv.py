"""The bundle's layer kinds (docs/model-format.md, docs/semantics.md section 10): round trips,
the conv2d weight file's bit order, one-line refusal of every structural error, dense bundles
written exactly as before, and the one-line refusal of every tool that needs the core."""
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bsnn.firmware_export.bundle import (BundleError, LayerSpec, load_bundle, pack_weight_rows,
                                         random_bundle, save_bundle)
from bsnn.firmware_export.spatial import output_shape

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = "convolution and pooling layers are not supported by the core yet (docs/semantics.md section 10)"


def _edit_manifest(path, fn):
    """Change the manifest and re-sign it: the loader must still check every field."""
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    text = json.dumps(m)
    (path / "manifest.json").write_text(text)
    (path / "manifest.sha256").write_text(f"{hashlib.sha256(text.encode()).hexdigest()}  manifest.json\n")


def _mnist_conv(rng=None, **overrides):
    """conv 5x5 (8 channels) -> OR pool 2x2 -> dense 10 on a 1 x 28 x 28 input."""
    shape = (1, 28, 28)
    c1 = LayerSpec.conv2d(shape, 8, 5, leak_v=1)
    p1 = LayerSpec.pool2d(output_shape(c1, shape), 2)
    return random_bundle(rng or np.random.default_rng(0), input_shape=shape,
                         layers=[c1, p1, LayerSpec(size=10, reset="none")], **overrides)


@pytest.mark.parametrize("seed", range(20))
def test_random_conv_bundles_round_trip_exactly(tmp_path, seed):
    bundle = random_bundle(np.random.default_rng(seed), spatial=True)
    save_bundle(bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.same_as(bundle)
    assert loaded.input_shape == bundle.input_shape and loaded.input_polarity == bundle.input_polarity
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["schema_version"] == 2
    for entry, layer in zip(manifest["layers"], bundle.layers):
        assert entry.get("kind", "dense") == layer.kind
        assert ("files" in entry) == layer.has_neurons     # pool2d: no files
    assert manifest.get("input_polarity", "xnor") == bundle.input_polarity
    other = random_bundle(np.random.default_rng(seed + 100), spatial=True)
    assert not loaded.same_as(other)


def test_conv_weight_file_bit_order_with_an_asymmetric_pattern(tmp_path):
    """Rows (c, ky, kx), c slowest; bit o % 8 of byte o // 8 is output channel o."""
    shape = (2, 4, 5)
    layer = LayerSpec.conv2d(shape, 10, (2, 3))
    bundle = random_bundle(np.random.default_rng(1), input_shape=shape,
                           layers=[layer, LayerSpec(size=3)])
    w = np.zeros((10, 2, 2, 3), dtype=np.uint8)
    w[0, 0, 0, 0] = 1          # row 0, byte 0 bit 0
    w[3, 0, 1, 0] = 1          # row (0*2 + 1)*3 + 0 = 3, byte 0 bit 3
    w[9, 1, 1, 2] = 1          # row (1*2 + 1)*3 + 2 = 11, byte 1 bit 1
    w[8, 1, 0, 1] = 1          # row (1*2 + 0)*3 + 1 = 7, byte 1 bit 0
    bundle.weights[0] = w
    save_bundle(bundle, tmp_path / "b")
    expected = bytearray(12 * 2)
    expected[0], expected[3 * 2] = 0x01, 0x08
    expected[11 * 2 + 1], expected[7 * 2 + 1] = 0x02, 0x01
    assert (tmp_path / "b" / "layer1_weights.bin").read_bytes() == bytes(expected)
    assert np.array_equal(load_bundle(tmp_path / "b").weights[0], w)


def test_a_1x1_convolution_of_a_1x1_map_has_the_dense_layers_file(tmp_path):
    rng = np.random.default_rng(2)
    shape = (11, 1, 1)
    bundle = random_bundle(rng, input_shape=shape, layers=[LayerSpec.conv2d(shape, 13, 1)])
    save_bundle(bundle, tmp_path / "b")
    dense_rows = bundle.weights[0][:, :, 0, 0].T             # [C_in, C_out] = [N_in, N_out]
    assert (tmp_path / "b" / "layer1_weights.bin").read_bytes() == pack_weight_rows(dense_rows)


def test_dense_bundles_are_written_exactly_as_before(tmp_path):
    """No kind, input_shape or input_polarity in a dense manifest: re-saving the shipped version 2
    model gives its manifest byte for byte (so its digest and build keys are unchanged)."""
    original = ROOT / "models" / "mnist"
    assert json.loads((original / "manifest.json").read_text())["schema_version"] == 2
    save_bundle(load_bundle(original), tmp_path / "again")
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (original / "manifest.json").read_bytes()
    save_bundle(random_bundle(np.random.default_rng(3), sizes=[9, 4, 2]), tmp_path / "d")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert not {"input_shape", "input_polarity"} & set(manifest)
    assert all(set(layer) == {"size", "current", "leak_v", "leak_c", "reset", "fire_once", "files"}
               for layer in manifest["layers"])


def test_every_shipped_bundle_loads_as_a_dense_network():
    shipped = sorted(p.parent for p in (ROOT / "models").glob("*/manifest.json")
                     if not p.parent.name.startswith("conv_"))
    assert len(shipped) >= 12
    for path in shipped:
        bundle = load_bundle(path)
        assert bundle.is_dense and bundle.input_shape is None, path.name
        assert all(layer.kind == "dense" for layer in bundle.layers)
    conv = load_bundle(ROOT / "models" / "conv_mnist")      # the shipped convolutional model
    assert not conv.is_dense and conv.input_shape == (1, 28, 28)
    assert [l.kind for l in conv.layers] == ["conv2d", "pool2d", "conv2d", "pool2d", "dense", "dense"]
    events = load_bundle(ROOT / "models" / "conv_nmnist")   # N-MNIST: OFF and ON as two channels
    assert events.input_shape == (2, 34, 34) and events.encoding["kind"] == "events"
    assert [(l.kind, l.padding) for l in events.layers[:4]] == [
        ("conv2d", (2, 2)), ("pool2d", (0, 0)), ("conv2d", (1, 1)), ("pool2d", (0, 0))]


# Structural errors: (edit of the saved manifest of _mnist_conv, expected message).
MANIFEST_ERRORS = [
    (lambda m: m["layers"][0].update(kernel=[29, 29]), "layers[0].kernel: 29 x 29 does not fit the 28 x 28 input padded by [0, 0]"),
    (lambda m: m["layers"][0].update(padding=[5, 0]), "layers[0].padding: must be in [0, kernel - 1] (every window must cover an input), got [5, 0]"),
    (lambda m: m["layers"][0].update(stride=[6, 1]), "layers[0].stride: must be in [1, kernel] (a longer stride skips inputs), got [6, 1]"),
    (lambda m: m["layers"][0].update(stride=[0, 1]), "layers[0].stride: must be in [1, kernel]"),
    (lambda m: m["layers"][0].update(kernel=[5]), "layers[0].kernel: must be a pair [h, w] of integers, got [5]"),
    (lambda m: m["layers"][0].update(kernel=[5, True]), "layers[0].kernel: must be a pair [h, w] of integers"),
    (lambda m: m["layers"][0].update(size=4608 + 1), "layers[0].size: must be C x H x W = 8 x 24 x 24 = 4608"),
    (lambda m: m["layers"][1].update(size=4608), "layers[1].size: must be C x H x W = 8 x 12 x 12 = 1152"),
    (lambda m: m["layers"][0].update(kind="conv3d"), "layers[0].kind: must be one of dense, conv2d, pool2d, got 'conv3d'"),
    (lambda m: m["layers"][0].pop("channels"), "layers[0].channels: missing"),
    (lambda m: m["layers"][0].update(channels=0), "layers[0].channels: must be in [1, 65535], got 0"),
    (lambda m: m["layers"][1].update(current=False), "layers[1].current: unknown field"),
    (lambda m: m["layers"][1].update(channels=8), "layers[1].channels: unknown field"),
    (lambda m: m["layers"][2].update(kernel=[1, 1]), "layers[2].kernel: unknown field"),
    (lambda m: m.pop("input_shape"), "input_shape: missing: layer 1 is conv2d and reads a [C, H, W] map"),
    (lambda m: m.update(input_shape=[1, 28, 27]), "input_shape: C x H x W = 1 x 28 x 27 must equal input_size 784"),
    (lambda m: m.update(input_shape=[784]), "input_shape: must be [C, H, W], three integers >= 1, got [784]"),
    (lambda m: m.update(input_polarity="sign"), "input_polarity: must be one of xnor, channels, got 'sign'"),
    (lambda m: m.update(input_polarity="channels"), "input_shape: must be [2, H, W] with H x W = input_size 784 (one channel per polarity), got [1, 28, 28]"),
    (lambda m: m["layers"].insert(0, m["layers"].pop(1)), "layers[0].kind: pool2d cannot read the input events"),
    (lambda m: m["layers"].append(m["layers"][1]), "layers[3].kind: the output layer needs neurons (dense or conv2d), got pool2d"),
    (lambda m: m["layers"].insert(2, m["layers"][1]), "layers[2].size: must be C x H x W = 8 x 6 x 6 = 288"),
    (lambda m: m.update(schema_version=1, metadata={}) or m.pop("encoding"), "input_shape: unknown field"),
]


@pytest.mark.parametrize("mutate, message", MANIFEST_ERRORS, ids=[m for _, m in MANIFEST_ERRORS])
def test_structural_errors_are_refused_in_one_line_naming_the_field(tmp_path, mutate, message):
    save_bundle(_mnist_conv(), tmp_path / "b")
    _edit_manifest(tmp_path / "b", mutate)
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "b")
    assert str(info.value).startswith(f"{tmp_path / 'b' / 'manifest.json'}: {message}")
    assert "\n" not in str(info.value)


def test_a_conv_layer_after_a_dense_one_is_refused(tmp_path):
    bundle = _mnist_conv()
    dense = LayerSpec(size=20)
    conv = replace(bundle.layers[0], size=20)
    bad = replace(bundle, layers=[dense, conv, bundle.layers[2]], input_shape=None)
    with pytest.raises(BundleError, match=r"^bundle: layers\[1\]\.kind: conv2d reads a \[C, H, W\] map: "
                                          r"it must follow a conv2d or pool2d layer, not a dense one$"):
        bad.validate()
    with pytest.raises(BundleError, match=r"^bundle: input_shape: only for a network whose layer 1 is conv2d"):
        replace(bundle, layers=[LayerSpec(size=10)], weights=[bundle.weights[2][:784]],
                bias=bundle.bias[2:], threshold=bundle.threshold[2:]).validate()


def test_conv_data_files_are_checked_against_the_shapes(tmp_path):
    save_bundle(_mnist_conv(), tmp_path / "b")
    weights = tmp_path / "b" / "layer1_weights.bin"
    data = weights.read_bytes()
    assert len(data) == 1 * 5 * 5 * 1           # 25 rows (c, ky, kx) of ceil(8 / 8) byte
    def resign(name, blob):
        (tmp_path / "b" / name).write_bytes(blob)
        _edit_manifest(tmp_path / "b", lambda m: m["files"][name].update(
            bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest()))
    resign("layer1_weights.bin", data[:-1])
    with pytest.raises(BundleError, match=r"layer1_weights.bin: weights: expected 25 bytes for "
                                          r"8x1x5x5 \(rows c, ky, kx of 8 bits\), found 24"):
        load_bundle(tmp_path / "b")
    resign("layer1_weights.bin", data)
    bias = (tmp_path / "b" / "layer1_bias.bin").read_bytes()
    resign("layer1_bias.bin", bias + bias[:4])
    with pytest.raises(BundleError, match=r"layer1_bias.bin: bias: expected 32 bytes \(int32 x 8\), found 36"):
        load_bundle(tmp_path / "b")


def test_conv_padding_bits_beyond_the_output_channels_must_be_zero(tmp_path):
    shape = (1, 3, 3)
    bundle = random_bundle(np.random.default_rng(4), input_shape=shape,
                           layers=[LayerSpec.conv2d(shape, 5, 2)])
    save_bundle(bundle, tmp_path / "b")
    blob = bytearray((tmp_path / "b" / "layer1_weights.bin").read_bytes())
    blob[2] |= 0x80                                         # bit 7 of row 2: no channel 7
    (tmp_path / "b" / "layer1_weights.bin").write_bytes(bytes(blob))
    _edit_manifest(tmp_path / "b", lambda m: m["files"]["layer1_weights.bin"].update(
        sha256=hashlib.sha256(bytes(blob)).hexdigest()))
    with pytest.raises(BundleError, match="padding bits beyond output channel 4 must be 0"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("change, message", [
    (lambda b: b.weights.__setitem__(0, b.weights[0][..., :4]), r"layers\[0\]\.weights: shape must be \(8, 1, 5, 5\), got \(8, 1, 5, 4\)"),
    (lambda b: b.bias.__setitem__(0, b.bias[0][:7]), r"layers\[0\]\.bias: shape must be \(8,\)"),
    (lambda b: b.threshold.__setitem__(0, np.zeros(4608, dtype=np.int64)), r"layers\[0\]\.threshold: shape must be \(8,\)"),
    (lambda b: b.weights.__setitem__(1, np.zeros((1,), dtype=np.uint8)), r"layers\[1\]\.weights: a pool2d layer has none"),
    (lambda b: b.layers.__setitem__(1, replace(b.layers[1], fire_once=True)), r"layers\[1\]\.fire_once: a pool2d layer has no neurons"),
    (lambda b: b.layers.__setitem__(1, replace(b.layers[1], channels=8)), r"layers\[1\]\.channels: not a field of a pool2d layer"),
    (lambda b: b.layers.__setitem__(2, replace(b.layers[2], kernel=(1, 1))), r"layers\[2\]\.kernel: not a field of a dense layer"),
])
def test_in_memory_errors_name_the_field(change, message):
    bundle = _mnist_conv()
    change(bundle)
    with pytest.raises(BundleError, match=f"^bundle: {message}"):
        bundle.validate()


def test_the_event_sensor_must_be_the_input_map():
    shape = (2, 3, 4)
    ok = random_bundle(np.random.default_rng(5), input_shape=shape, input_polarity="channels",
                       layers=[LayerSpec.conv2d(shape, 3, 2)],
                       encoding={"kind": "events", "width": 4, "height": 3})
    assert ok.input_size == 12 and ok.input_units == 24
    with pytest.raises(BundleError, match=r"input_shape: H x W = 3 x 4 must be the sensor's height x width = 4 x 3"):
        replace(ok, encoding={"kind": "events", "width": 3, "height": 4}).validate()


def test_layer_spec_constructors_derive_the_output_size():
    conv = LayerSpec.conv2d((2, 34, 34), 12, 5, stride=2, padding=1)
    assert (conv.kernel, conv.stride, conv.padding, conv.size) == ((5, 5), (2, 2), (1, 1), 12 * 16 * 16)
    pool = LayerSpec.pool2d((12, 15, 15), 2)                 # stride = kernel; floor drops one
    assert (pool.stride, pool.size) == ((2, 2), 12 * 7 * 7)


# ---------------------------------------------------------------------------------------------
# Tools that need the core refuse convolutional bundles with one line (exit code 2).

def test_require_dense_names_the_first_spatial_layer_and_the_polarity_rule():
    bundle = _mnist_conv()
    assert not bundle.is_dense
    with pytest.raises(BundleError, match="^" + re.escape(f"my tool: layers[0].kind: conv2d: {REFUSAL}") + "$"):
        bundle.require_dense("my tool")
    dense = random_bundle(np.random.default_rng(6), sizes=[12, 4, 3])
    assert dense.is_dense and dense.require_dense("x") is dense
    dense.input_size, dense.input_polarity = 6, "channels"
    dense.validate()
    with pytest.raises(BundleError, match=r"^x: input_polarity: channels: one input channel per polarity is "
                                          r"not supported by the core yet \(docs/semantics.md section 10\)$"):
        dense.require_dense("x")


def test_library_entry_points_refuse_a_conv_bundle():
    from bsnn.firmware_export.firmware import c_header
    from bsnn.hdl.config import BuildMismatch, CoreGeometry, check_fits
    bundle = _mnist_conv()
    for call, what in ((lambda: c_header(bundle), "C header"),):
        with pytest.raises(BundleError) as info:
            call()
        assert str(info.value) == f"{what}: layers[0].kind: conv2d: {REFUSAL}"
    # the core runs it (docs/architecture.md, "Convolutional networks"), but not in a dense build
    dense_geometry = CoreGeometry.from_bundle(random_bundle(np.random.default_rng(7), sizes=[784, 4608, 1152, 10]))
    with pytest.raises(BuildMismatch, match="layer kinds, windows or input polarity differ"):
        check_fits(bundle, dense_geometry)
    assert CoreGeometry.from_bundle(bundle).kinds[0] == "conv2d"


def test_bitstream_refuses_a_conv_bundle_that_does_not_fit_in_one_line(tmp_path):
    """The core runs convolutions, but this 32C5-P2-64C5-P2 network's memories exceed the
    iCE40UP5K's 30 block RAMs: one line naming the part and the memories, exit 2, before any tool
    runs."""
    save_bundle(_mnist_conv(), tmp_path / "conv")
    out = tmp_path / "out"
    args = ["bitstream", "--board", "icebreaker", "--model", str(tmp_path / "conv"),
            "--out", str(out / "bs"), "--throughput-images", "0"]
    res = subprocess.run([sys.executable, "-m", "bsnn"] + args, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert re.fullmatch(r"bsnn bitstream: error: network 784-4608-1152-10 \(P=\d+, U=1\) does not fit the "
                        r"iCE40UP5K of icebreaker: weights in bram: \d+ block RAMs > 30 .*", res.stderr.strip())
    assert not (out / "bs" / "bitstream").exists()


def test_verilog_command_builds_a_conv_bundle(tmp_path):
    """``bsnn verilog`` generates the core of a convolutional bundle (no C header: that one
    still refuses it)."""
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, spatial=True, input_shape=(1, 6, 5),
                           layers=[LayerSpec.conv2d((1, 6, 5), 3, 3, padding=1),
                                   LayerSpec.pool2d((3, 6, 5), 2), LayerSpec(size=4)])
    save_bundle(bundle, tmp_path / "conv")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "bsnn", "verilog", "--model", str(tmp_path / "conv"),
                          "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "hardware.json").read_text())
    assert [s[0] for s in manifest["build_key"]["spatial"][:2]] == ["conv2d", "pool2d"]
    assert "TapGenerator" in (out / "bsnn_core.v").read_text() or "taps" in (out / "bsnn_core.v").read_text()
    assert not (out / "model.h").exists()
