"""Property tests: random valid bundles survive every image format bit-identically, and random
damage to a saved bundle always ends in a clean one-line error."""
import os
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bsnn.firmware_export.bundle import BundleError, LayerSpec, load_bundle, random_bundle, save_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.generate import generate
from bsnn.hdl.images import config_writes_for
from bsnn.hdl.layouts import ConfigTarget, GlobalAddress, ReadoutRule, ResetMode

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RESETS = {v: k for k, v in ResetMode.NAMES.items()}
READOUTS = {v: k for k, v in ReadoutRule.NAMES.items()}


def _signed(x, width):
    return x - (1 << width) if x >> (width - 1) else x


def bundle_from_images(template, geom, weights, bias, threshold, modes, globals_):
    """Rebuild a bundle from memory images alone (the inverse of bsnn.hdl.images); ``template``
    supplies only what images do not carry (metadata)."""
    ws, bs, ts, layers = [], [], [], []
    for l, n_out in enumerate(geom.layer_sizes):
        n_in, chunks, base = geom.sizes[l], geom.chunks[l], geom.weight_base[l]
        w = np.zeros((n_in, n_out), dtype=np.uint8)
        for i in range(n_in):
            for k in range(chunks):
                word = weights[base + i * chunks + k]
                for m in range(geom.lanes):
                    if k * geom.lanes + m < n_out:
                        w[i, k * geom.lanes + m] = (word >> m) & 1
        ws.append(w)
        nb = geom.neuron_base[l]
        bs.append(np.array([_signed(b, geom.bias_width) for b in bias[nb:nb + n_out]], dtype=np.int64))
        ts.append(np.array(threshold[nb:nb + n_out], dtype=np.int64))
        mode = modes[l]
        layers.append(LayerSpec(size=n_out, current=bool(mode & 1), fire_once=bool(mode >> 1 & 1),
                                reset=RESETS[mode >> 2 & 3], leak_v=mode >> 4 & 63, leak_c=mode >> 10 & 63))
    return replace(template, layers=layers, weights=ws, bias=bs, threshold=ts,
                   time_steps=globals_[GlobalAddress.TIME_STEPS],
                   readout=READOUTS[globals_[GlobalAddress.READOUT]],
                   max_input_events=globals_[GlobalAddress.MAX_INPUT_EVENTS])


@SLOW
@given(seed=st.integers(0, 2**32 - 1), lanes=st.sampled_from([1, 3, 8, 16]))
def test_hex_images_round_trip(tmp_path_factory, seed, lanes):
    bundle = random_bundle(np.random.default_rng(seed))
    out = tmp_path_factory.mktemp("img")
    generate(bundle, HardwareConfig(lanes=lanes), out)
    geom = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=lanes))
    read = lambda name: [int(x, 16) for x in (out / name).read_text().split()]
    glob = dict(enumerate(read("global.hex")))
    back = bundle_from_images(bundle, geom, read("weights.hex"), read("bias.hex"), read("threshold.hex"),
                              read("layer_mode.hex"), glob)
    assert back.same_as(bundle)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lanes=st.integers(1, 20))
def test_config_writes_round_trip(seed, lanes):
    bundle = random_bundle(np.random.default_rng(seed))
    geom = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=lanes))
    mem = {t: {} for t in range(5)}
    for target, address, data in config_writes_for(bundle, geom):
        mem[target][address] = data
    dense = lambda t, n: [mem[t][a] for a in range(n)]
    back = bundle_from_images(bundle, geom, dense(ConfigTarget.WEIGHTS, geom.weight_depth),
                              dense(ConfigTarget.BIAS, geom.neuron_total),
                              dense(ConfigTarget.THRESHOLD, geom.neuron_total),
                              dense(ConfigTarget.LAYER_MODE, geom.n_layers), mem[ConfigTarget.GLOBAL])
    assert back.same_as(bundle)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), data=st.data())
def test_random_damage_always_gives_a_clean_error(tmp_path_factory, seed, data):
    path = tmp_path_factory.mktemp("b") / "m"
    save_bundle(random_bundle(np.random.default_rng(seed), sizes=[9, 7, 3]), path)
    name = data.draw(st.sampled_from(sorted(os.listdir(path))))
    raw = bytearray((path / name).read_bytes())
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "delete"]))
    if kind == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[pos]))
        (path / name).write_bytes(bytes(raw))
    elif kind == "truncate":
        (path / name).write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw) - 1))]))
    elif kind == "extend":
        (path / name).write_bytes(bytes(raw) + data.draw(st.binary(min_size=1, max_size=8)))
    else:
        (path / name).unlink()
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    assert "\n" not in str(info.value) and str(info.value)
