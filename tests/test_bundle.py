"""The model bundle: bit order, round trips, and clean refusal of every kind of damage."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bsnn.firmware_export.bundle import (BundleError, load_bundle, pack_weight_rows,
                                    random_bundle, save_bundle, unpack_weight_rows)


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
    (lambda m: m.update(schema_version=2), "schema_version: unsupported version 2"),
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
