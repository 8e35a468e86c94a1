"""The model bundle: bit order, round trips, and clean refusal of every kind of damage."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bsnn.firmware_export.bundle import (SCHEMA_VERSION, BundleError, load_bundle, pack_weight_rows,
                                         random_bundle, save_bundle, unpack_weight_rows)
from bsnn.firmware_export.encoding import PARAMETERS


def test_bit_order_is_element_i_at_bit_i_with_an_asymmetric_pattern(tmp_path):
    # Row 0 has only neuron 0 set, row 1 only neuron 9, row 2 neurons 0..2: any swap of bits,
    # bytes or rows changes the packed bytes or the loaded matrix.
    w = np.zeros((3, 10), dtype=np.uint8)
    w[0, 0] = 1
    w[1, 9] = 1
    w[2, :3] = 1
    assert pack_weight_rows(w) == bytes([0x01, 0x00, 0x00, 0x02, 0x07, 0x00])
    bundle = random_bundle(np.random.default_rng(0), sizes=[3, 10])
    bundle.weights = [w]
    save_bundle(bundle, tmp_path / "b")
    assert (tmp_path / "b" / "layer1_weights.bin").read_bytes() == bytes([1, 0, 0, 2, 7, 0])
    loaded = load_bundle(tmp_path / "b")
    assert np.array_equal(loaded.weights[0], w)
    assert loaded.weights[0][1, 9] == 1 and loaded.weights[0][1, 8] == 0


@pytest.mark.parametrize("seed", range(10))
def test_random_bundles_round_trip_exactly(tmp_path, seed):
    bundle = random_bundle(np.random.default_rng(seed))
    save_bundle(bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.same_as(bundle)
    assert loaded.metadata == bundle.metadata


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_in=st.integers(1, 40), n_out=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_property(n_in, n_out, seed):
    w = (np.random.default_rng(seed).random((n_in, n_out)) < 0.5).astype(np.uint8)
    assert np.array_equal(unpack_weight_rows(pack_weight_rows(w), n_in, n_out), w)


@pytest.fixture
def saved(tmp_path):
    bundle = random_bundle(np.random.default_rng(42), sizes=[12, 9, 5])
    return save_bundle(bundle, tmp_path / "b"), bundle


def _edit_manifest(path, fn):
    """Change the manifest *and* re-sign it, as a careless tool would: the loader must still
    catch every inconsistency field by field."""
    import hashlib
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    text = json.dumps(m)
    (path / "manifest.json").write_text(text)
    (path / "manifest.sha256").write_text(f"{hashlib.sha256(text.encode()).hexdigest()}  manifest.json\n")


def test_every_single_byte_change_is_refused(saved):
    """Flip each byte of every file in turn (manifest and its checksum file included): the
    loader must refuse with a one-line BundleError, never another exception or a model."""
    path, original = saved
    for name in sorted(os.listdir(path)):
        fpath = path / name
        data = fpath.read_bytes()
        for pos in range(len(data)):
            damaged = bytearray(data)
            damaged[pos] ^= 0x20 if name == "manifest.json" else 0xFF
            fpath.write_bytes(bytes(damaged))
            with pytest.raises(BundleError) as info:
                load_bundle(path)
            assert "\n" not in str(info.value), (name, pos)
        fpath.write_bytes(data)
    assert load_bundle(path).same_as(original)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(schema_version=3), "schema_version: unsupported version 3 (this tool reads 1, 2)"),
    (lambda m: m.update(time_steps=0), "time_steps: must be in [1, 65535], got 0"),
    (lambda m: m.update(readout="max"), "readout: must be one of"),
    (lambda m: m["widths"].update(v=40), "widths.v: must be in [2, 32], got 40"),
    (lambda m: m["layers"][0].update(reset="half"), "layers[0].reset: must be one of"),
    (lambda m: m["layers"][0].update(leak_v=99), "layers[0].leak_v: must be in"),
    (lambda m: m["layers"][1].update(size=6), "layer2_bias.bin: bias: expected 24 bytes"),
    (lambda m: m["layers"][0].update(current="yes"), "layers[0].current: must be a bool"),
    (lambda m: m.update(bogus=1), "bogus: unknown field"),
    (lambda m: m.pop("layers"), "layers: missing"),
])
def test_manifest_errors_name_the_file_and_field(saved, mutate, message):
    path, _ = saved
    _edit_manifest(path, mutate)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    assert message in str(info.value)
    assert str(path / "manifest.json") in str(info.value) or ".bin" in str(info.value)


def test_manifest_edit_without_resigning_is_refused(saved):
    path, _ = saved
    text = (path / "manifest.json").read_text().replace('"time_steps": ', '"time_steps":  ')
    (path / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="manifest.json: sha256: checksum mismatch with manifest.sha256"):
        load_bundle(path)
    (path / "manifest.sha256").unlink()
    with pytest.raises(BundleError, match="manifest.sha256: file: missing"):
        load_bundle(path)


def test_truncated_and_missing_files(saved):
    path, _ = saved
    (path / "layer1_bias.bin").write_bytes((path / "layer1_bias.bin").read_bytes()[:-1])
    with pytest.raises(BundleError, match=r"layer1_bias.bin: bytes: expected \d+, found"):
        load_bundle(path)
    (path / "layer1_bias.bin").unlink()
    with pytest.raises(BundleError, match="layer1_bias.bin: file: missing"):
        load_bundle(path)
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(path / "nothing")


def test_values_outside_widths_are_refused_even_with_valid_checksums(tmp_path):
    bundle = random_bundle(np.random.default_rng(1), sizes=[4, 3], v_width=8, bias_width=4)
    bundle.threshold[0][1] = 0
    with pytest.raises(BundleError, match=r"layers\[0\].threshold: values must be in \[1, 127\], found 0"):
        save_bundle(bundle, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    bundle.threshold[0][1] = 1
    bundle.bias[0][0] = 8
    with pytest.raises(BundleError, match=r"bias: values must be in \[-8, 7\], found 8"):
        bundle.validate()
    bundle.bias[0][0] = 0
    bundle.weights[0][0, 0] = 2
    with pytest.raises(BundleError, match="must be binary"):
        bundle.validate()


def test_save_is_atomic_and_replaces_old_bundle(tmp_path):
    a = random_bundle(np.random.default_rng(1), sizes=[4, 3])
    b = random_bundle(np.random.default_rng(2), sizes=[6, 2])
    save_bundle(a, tmp_path / "m")
    bad = random_bundle(np.random.default_rng(3), sizes=[4, 3])
    bad.metadata = {"x": object()}
    with pytest.raises(BundleError, match="metadata: not JSON"):
        save_bundle(bad, tmp_path / "m")
    assert load_bundle(tmp_path / "m").same_as(a)
    save_bundle(b, tmp_path / "m")
    assert load_bundle(tmp_path / "m").same_as(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---------------------------------------------------------------------------------------------
# The input encoding (schema version 2: the field ``encoding``; version 1: ``metadata.encoding``).

ROOT = Path(__file__).resolve().parent.parent
EVERY_KIND = [
    ({"kind": "rate"}, {"kind": "rate"}),
    ({"kind": "threshold"}, {"kind": "threshold", "threshold": 128}),
    ({"kind": "threshold", "threshold": 7}, {"kind": "threshold", "threshold": 7}),
    ({"kind": "latency"}, {"kind": "latency", "min_value": 1}),
    ({"kind": "latency", "min_value": 0}, {"kind": "latency", "min_value": 0}),
    ({"kind": "poisson", "seed": 2**40}, {"kind": "poisson", "seed": 2**40}),
    ({"kind": "events", "width": 4, "height": 3},
     {"kind": "events", "window_us": 300_000, "late_events": "last_step", "max_per_pixel": None,
      "width": 4, "height": 3}),
    ({"kind": "events", "window_us": 1000, "late_events": "drop", "max_per_pixel": 2, "width": 2,
      "height": 6},
     {"kind": "events", "window_us": 1000, "late_events": "drop", "max_per_pixel": 2, "width": 2,
      "height": 6}),
]


def test_every_parameter_of_every_kind_is_exercised_by_the_round_trip_table():
    covered = {(spec["kind"], name) for spec, full in EVERY_KIND for name in full if name != "kind"}
    assert covered == {(kind, name) for kind, params in PARAMETERS.items() for name in params}


@pytest.mark.parametrize("given, complete", EVERY_KIND, ids=lambda v: json.dumps(v))
def test_every_encoding_kind_round_trips_complete(tmp_path, given, complete):
    bundle = random_bundle(np.random.default_rng(5), sizes=[12, 4, 3], encoding=given)
    save_bundle(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 2
    assert manifest["encoding"] == complete            # every parameter written, defaults filled in
    assert list(manifest["encoding"]) == list(complete)
    loaded = load_bundle(tmp_path / "b")
    assert loaded.encoding == complete and loaded.same_as(bundle)
    assert not loaded.same_as(random_bundle(np.random.default_rng(5), sizes=[12, 4, 3],
                                            encoding={"kind": "latency", "min_value": 77}))


def _as_version_1(encoding_in_metadata):
    """A manifest edit giving the version 1 layout: no field encoding, metadata.encoding as given."""
    def edit(m):
        m["schema_version"] = 1
        del m["encoding"]
        if encoding_in_metadata is not None:
            m["metadata"]["encoding"] = encoding_in_metadata
    return edit


@pytest.mark.parametrize("v1_encoding, complete", [
    (None, {"kind": "rate"}),                                     # absent meant rate
    ({"kind": "rate", "time_steps": 3}, {"kind": "rate"}),        # the copy of T is dropped
    ({"kind": "latency", "time_steps": 3}, {"kind": "latency", "min_value": 1}),
    ({"kind": "threshold"}, {"kind": "threshold", "threshold": 128}),
    ({"kind": "poisson"}, {"kind": "poisson", "seed": 0}),
    ({"kind": "events", "time_steps": 3, "window_us": 300000},
     {"kind": "events", "window_us": 300000, "late_events": "last_step", "max_per_pixel": None,
      "width": 34, "height": 34}),
])
def test_version_1_bundles_load_with_the_version_1_defaults(tmp_path, v1_encoding, complete):
    bundle = random_bundle(np.random.default_rng(6), sizes=[34 * 34, 3], time_steps=3)
    save_bundle(bundle, tmp_path / "b")
    _edit_manifest(tmp_path / "b", _as_version_1(v1_encoding))
    loaded = load_bundle(tmp_path / "b")
    assert loaded.encoding == complete
    assert "encoding" not in loaded.metadata and loaded.metadata["origin"] == "random_bundle"
    save_bundle(loaded, tmp_path / "v2")                 # saving writes version 2
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["encoding"] == complete
    assert "encoding" not in manifest["metadata"]


def test_shipped_bundles_load_with_their_complete_encoding():
    expected = {"rate": {"kind": "rate"}, "latency": {"kind": "latency", "min_value": 1},
                "events": {"kind": "events", "window_us": 300000, "late_events": "last_step",
                           "max_per_pixel": None, "width": 34, "height": 34}}
    shipped = sorted(p.parent for p in (ROOT / "models").glob("*/manifest.json"))
    assert len(shipped) >= 12
    for path in shipped:
        raw = json.loads((path / "manifest.json").read_text())
        recorded = raw["encoding"] if raw["schema_version"] == 2 else raw["metadata"].get("encoding") or {}
        bundle = load_bundle(path)
        assert bundle.encoding == expected[recorded.get("kind", "rate")], path.name


BAD_ENCODINGS = [
    (lambda e: e.update(kind="morse"), "encoding.kind: must be one of rate, threshold, latency, poisson, events, got 'morse'"),
    (lambda e: e.pop("kind"), "encoding.kind: must be one of"),
    (lambda e: e.update(window=1000), "encoding.window: unknown parameter of events (its parameters: window_us, "),
    (lambda e: e.update(threshold=128), "encoding.threshold: unknown parameter of events"),
    (lambda e: e.update(time_steps=3), "encoding.time_steps: unknown parameter of events"),
    (lambda e: e.pop("window_us"), "encoding.window_us: missing"),
    (lambda e: e.update(window_us="300000"), "encoding.window_us: must be an integer, got '300000'"),
    (lambda e: e.update(window_us=1.5), "encoding.window_us: must be an integer, got 1.5"),
    (lambda e: e.update(window_us=True), "encoding.window_us: must be an integer, got True"),
    (lambda e: e.update(window_us=0), "encoding.window_us: must be in [1, 4294967295], got 0"),
    (lambda e: e.update(max_per_pixel=0), "encoding.max_per_pixel: must be in [1, 65535], got 0"),
    (lambda e: e.update(max_per_pixel="none"), "encoding.max_per_pixel: must be an integer or null"),
    (lambda e: e.update(late_events="clip"), "encoding.late_events: must be one of last_step, drop, got 'clip'"),
    (lambda e: e.update(width=5), "encoding.width: width x height = 5 x 3 must equal input_size 12"),
    (lambda e: e.clear() or e.update(kind="threshold", threshold=256), "encoding.threshold: must be in [1, 255], got 256"),
    (lambda e: e.clear() or e.update(kind="latency", min_value=-1), "encoding.min_value: must be in [0, 255], got -1"),
    (lambda e: e.clear() or e.update(kind="poisson", seed=-5), "encoding.seed: must be in [0, "),
    (lambda e: e.clear() or e.update(kind="rate", seed=1), "encoding.seed: unknown parameter of rate (its parameters: none)"),
]


@pytest.mark.parametrize("mutate, message", BAD_ENCODINGS)
def test_bad_encodings_are_refused_on_load_in_one_line_naming_the_field(tmp_path, mutate, message):
    bundle = random_bundle(np.random.default_rng(7), sizes=[12, 4, 3],
                           encoding={"kind": "events", "width": 4, "height": 3})
    save_bundle(bundle, tmp_path / "b")
    _edit_manifest(tmp_path / "b", lambda m: mutate(m["encoding"]))
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "b")
    assert str(info.value).startswith(f"{tmp_path / 'b' / 'manifest.json'}: {message}")
    assert "\n" not in str(info.value)
    if message.endswith("missing"):
        return   # in memory a parameter left out means its default: the manifest must be complete
    # the same spec in memory is refused when saving, and nothing is written
    bad = dict(bundle.encoding)
    mutate(bad)
    bundle.encoding = bad
    with pytest.raises(BundleError, match=r"^bundle: encoding"):
        save_bundle(bundle, tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("encoding"), "encoding: missing"),
    (lambda m: m.update(encoding="rate"), "encoding: must be a dict"),
    (lambda m: m["metadata"].update(encoding={"kind": "rate"}),
     "metadata.encoding: the encoding is the top-level field encoding since schema version 2"),
    (_as_version_1({"kind": "rate", "time_steps": 5}), "metadata.encoding.time_steps: differs from time_steps 3"),
    (_as_version_1({"kind": "events", "window": 5}), "metadata.encoding.window: unknown parameter of events"),
    (_as_version_1("rate"), "metadata.encoding: must be an object"),
    (lambda m: m.update(schema_version=1), "encoding: unknown field"),   # version 1 has no such field
])
def test_encoding_in_the_wrong_place_or_version_is_refused(tmp_path, mutate, message):
    bundle = random_bundle(np.random.default_rng(8), sizes=[1156, 3], time_steps=3)
    save_bundle(bundle, tmp_path / "b")
    _edit_manifest(tmp_path / "b", mutate)
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "b")
    assert str(info.value).startswith(f"{tmp_path / 'b' / 'manifest.json'}: {message}")


@pytest.mark.parametrize("command", [
    "verilog --model {model} --out {out}",
    "nir export --model {model} --out {out}/m.nir",
    "eval --model {model} --dataset mnist --limit 5 --json {out}/r.json",
])
def test_commands_refuse_a_bad_encoding_before_writing_anything(tmp_path, command):
    import subprocess
    import sys
    bundle = random_bundle(np.random.default_rng(9), sizes=[784, 5, 3], encoding={"kind": "latency"})
    save_bundle(bundle, tmp_path / "b")
    _edit_manifest(tmp_path / "b", lambda m: m["encoding"].update(min_value=300))
    out = tmp_path / "out"
    args = command.format(model=tmp_path / "b", out=out).split()
    res = subprocess.run([sys.executable, "-m", "bsnn"] + args, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "manifest.json: encoding.min_value: must be in [0, 255], got 300" in res.stderr
    assert not out.exists()
