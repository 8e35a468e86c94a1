"""Convolution and pooling (docs/semantics.md section 10): the golden model against the plain
per-event reference, hand-computed cases, equivalences with dense layers, and exactness."""
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import LayerSpec, random_bundle, save_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.firmware_export.spatial import Pool2dWiring, output_shape, taps_per_position
from tests.test_golden import _compare


@pytest.mark.parametrize("seed", range(40))
def test_golden_matches_reference_on_random_conv_bundles(seed):
    """random_spatial_layers: odd shapes, strides 1 to 3, padding, 1 x 1 kernels, 1 to 11
    channels, pooling anywhere after layer 1, both polarity rules, every neuron mode."""
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng, spatial=True)
    on, off = random_counts(bundle, batch=2, rng=rng, polarity=bool(seed % 2))
    _compare(bundle, on, off, rng=rng)


def _conv(shape, channels, kernel, stride=1, padding=0, **modes):
    return LayerSpec.conv2d(shape, channels, kernel, stride, padding, **modes)


def _architectures():
    """(name, input_shape, input_polarity, layers): the corner cases, named."""
    cases = []
    s = (1, 7, 5)                                            # odd shape; 3x3 'same'; C_out 9
    c1 = _conv(s, 9, 3, 1, 1)
    p1 = LayerSpec.pool2d(output_shape(c1, s), 2)             # floor drops the last row
    cases.append(("odd-same-pool", s, "xnor", [c1, p1, LayerSpec(size=5)]))
    s = (2, 9, 11)                                           # stride 2, padding 1, C_out 13, then 1x1
    c1 = _conv(s, 13, 3, 2, 1)
    c2 = _conv(output_shape(c1, s), 3, 1)
    cases.append(("stride2-1x1", s, "channels", [c1, c2, LayerSpec(size=4)]))
    s = (3, 4, 4)                                            # 1x1 kernel, C_out 1; overlapping padded
    c1 = _conv(s, 1, 1)                                      # pool; conv output layer
    p1 = LayerSpec.pool2d(output_shape(c1, s), 3, 1, 1)
    c2 = _conv(output_shape(p1, output_shape(c1, s)), 4, 2, 2)
    cases.append(("1x1-pool-conv-out", s, "xnor", [c1, p1, c2]))
    s = (1, 2, 2)                                            # kernel larger than the input
    c1 = _conv(s, 2, 3, 1, 2)
    cases.append(("kernel>input", s, "xnor", [c1, LayerSpec(size=3)]))
    s = (2, 6, 8)                                            # non-square kernel, stride, padding
    c1 = _conv(s, 5, (2, 3), (1, 2), (1, 0))
    p1 = LayerSpec.pool2d(output_shape(c1, s), (2, 1))
    p2 = LayerSpec.pool2d(output_shape(p1, output_shape(c1, s)), (1, 2), (1, 1), (0, 1))
    cases.append(("rect-pool-pool", s, "channels", [c1, p1, p2, LayerSpec(size=6), LayerSpec(size=3)]))
    s = (1, 10, 10)                                          # 8 and 16 channels: whole bytes
    c1 = _conv(s, 8, 3)
    c2 = _conv(output_shape(c1, s), 16, 3, 2)
    cases.append(("byte-channels", s, "xnor", [c1, c2, LayerSpec(size=10)]))
    return cases


@pytest.mark.parametrize("name, shape, polarity, layers", _architectures(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("seed", range(4))
def test_golden_matches_reference_on_corner_cases(name, shape, polarity, layers, seed):
    rng = np.random.default_rng(seed)
    modes = [dict(current=bool(seed & 1), leak_v=seed % 3, reset=("subtract", "zero", "none")[seed % 3],
                  fire_once=seed == 3) for _ in layers]
    layers = [replace(layer, **m) if layer.has_neurons else layer for layer, m in zip(layers, modes)]
    bundle = random_bundle(rng, input_shape=shape, layers=layers, input_polarity=polarity,
                           readout=("spike_count", "potential", "first_spike")[seed % 3], time_steps=6)
    on, off = random_counts(bundle, batch=2, rng=rng, density=0.4, polarity=True)
    res = _compare(bundle, on, off, rng=rng)
    assert any(res.spikes[k].any() for k in range(len(layers)) if layers[k].has_neurons)


def _single_event_bundle(shape, channels, kernel, stride, padding, polarity="xnor"):
    """One conv layer, all weights +1, no bias, no leak, no reset, a threshold never reached:
    after one step each neuron's potential is its synaptic input."""
    layer = _conv(shape, channels, kernel, stride, padding, reset="none")
    bundle = random_bundle(np.random.default_rng(0), input_shape=shape, layers=[layer],
                           input_polarity=polarity, time_steps=1, v_width=16, bias_width=4)
    bundle.weights[0][:] = 1
    bundle.bias[0][:] = 0
    bundle.threshold[0][:] = 1000
    return bundle.validate()


def _one_event(bundle, index, on=True):
    counts = torch.zeros(1, 1, bundle.input_size, dtype=torch.int64)
    counts[0, 0, index] = 1
    zeros = torch.zeros_like(counts)
    return (counts, zeros) if on else (zeros, counts)


@pytest.mark.parametrize("y, x, neurons", [(0, 0, 4), (0, 2, 6), (2, 2, 9), (4, 4, 4), (3, 0, 6)])
def test_padding_contributes_nothing_and_sops_are_the_clipped_fanout(y, x, neurons):
    """3x3, stride 1, padding 1 on 5x5, C_out 2: one ON event reaches the 9, 6 or 4 positions
    whose windows hold it (+1 each, the weights are +1) in both channels; every other neuron,
    whatever padding its window covers, stays exactly 0; SOPs = 2 x that count."""
    bundle = _single_event_bundle((1, 5, 5), 2, 3, 1, 1)
    res = run_golden(bundle, *_one_event(bundle, y * 5 + x))
    v = res.v[0][0].reshape(2, 5, 5)
    expected = torch.zeros(5, 5, dtype=torch.int64)
    expected[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 1
    assert torch.equal(v[0], expected) and torch.equal(v[1], expected)
    assert int(expected.sum()) == neurons
    assert int(res.sops[0]) == 2 * neurons


def test_off_events_negate_by_xnor_and_are_channel_0_with_polarity_channels():
    xnor = _single_event_bundle((1, 3, 3), 1, 3, 1, 1)
    assert run_golden(xnor, *_one_event(xnor, 4, on=False)).v[0][0].tolist() == [-1] * 9
    channels = _single_event_bundle((2, 3, 3), 1, 3, 1, 1, polarity="channels")
    channels.weights[0][0, 1] = 0          # channel 1 (ON) weights -1, channel 0 (OFF) +1
    assert run_golden(channels, *_one_event(channels, 4, on=False)).v[0][0].tolist() == [1] * 9
    assert run_golden(channels, *_one_event(channels, 4, on=True)).v[0][0].tolist() == [-1] * 9


def test_taps_per_position_by_hand():
    assert taps_per_position(5, 3, 1, 1).tolist() == [2, 3, 3, 3, 2]
    assert taps_per_position(5, 3, 2, 1).tolist() == [1, 2, 1, 2, 1]   # windows -1..1, 1..3, 3..5
    assert taps_per_position(7, 2, 2, 0).tolist() == [1, 1, 1, 1, 1, 1, 0]   # last row: no window
    assert taps_per_position(4, 1, 1, 0).tolist() == [1, 1, 1, 1]


def test_or_pooling_by_hand():
    """2x2 windows, stride 1, padding 1 on a 3x3 map: output 4x4; a spike at (0, 0) is in the
    four windows at the top left, a spike at (2, 1) in four at the bottom; padding never spikes."""
    layer = LayerSpec.pool2d((1, 3, 3), 2, 1, 1)
    assert layer.size == 16
    spikes = torch.zeros(1, 9)
    spikes[0, 0] = 1
    spikes[0, 2 * 3 + 1] = 1
    out = Pool2dWiring(layer, (1, 3, 3)).pool(spikes).reshape(4, 4).to(torch.int64)
    assert out.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]


@pytest.mark.parametrize("seed", range(6))
def test_full_kernel_convolution_is_the_dense_layer_of_the_flat_order(seed):
    """A conv2d whose kernel covers the whole C x H x W input (no padding) has a 1 x 1 output
    per channel: it is the dense layer with w_dense[(c*H + y)*W + x][o] = w[o][c][y][x], spike
    for spike and SOP for SOP. This pins the flat order of semantics section 10.1."""
    rng = np.random.default_rng(seed)
    shape = (2, 3, 4)
    conv = random_bundle(rng, input_shape=shape, layers=[_conv(shape, 7, (3, 4)), LayerSpec(size=5)],
                         input_polarity="xnor")
    dense = random_bundle(rng, sizes=[24, 7, 5])
    dense.layers = [LayerSpec(**{k: getattr(conv.layers[0], k) for k in
                                 ("current", "leak_v", "leak_c", "reset", "fire_once")}, size=7),
                    conv.layers[1]]
    for name in ("time_steps", "v_width", "c_width", "bias_width", "readout", "max_input_events"):
        setattr(dense, name, getattr(conv, name))
    dense.weights = [conv.weights[0].reshape(7, 24).T.copy(), conv.weights[1]]
    dense.bias, dense.threshold = list(conv.bias), list(conv.threshold)
    dense.validate()
    on, off = random_counts(conv, batch=4, rng=rng)
    a, b = run_golden(conv, on, off), run_golden(dense, on, off)
    for k in range(2):
        assert torch.equal(a.spikes[k], b.spikes[k]) and torch.equal(a.v[k], b.v[k])
    assert torch.equal(a.sops_per_layer, b.sops_per_layer)
    assert torch.equal(a.prediction, b.prediction)


def test_hidden_spikes_count_neurons_not_pooled_positions():
    shape = (1, 6, 6)
    c1 = _conv(shape, 3, 3)
    p1 = LayerSpec.pool2d(output_shape(c1, shape), 2)
    bundle = random_bundle(np.random.default_rng(3), input_shape=shape, layers=[c1, p1, LayerSpec(size=4)])
    on, off = random_counts(bundle, batch=3, rng=np.random.default_rng(4))
    res = run_golden(bundle, on, off)
    assert res.hidden_neurons == c1.size == 48
    assert torch.equal(res.hidden_spikes, res.spikes[0].sum(dim=(0, 2)))
    assert res.sops_per_layer[1].eq(0).all()               # pooling looks up no weights


def test_dense_layer_1_with_polarity_channels_matches_reference():
    rng = np.random.default_rng(11)
    bundle = random_bundle(rng, sizes=[2 * 6, 5, 3])
    bundle.input_size, bundle.input_polarity, bundle.max_input_events = 6, "channels", 12
    bundle.validate()
    on, off = random_counts(bundle, batch=3, rng=rng)
    _compare(bundle, on, off, rng=rng)


def test_synaptic_sums_stay_exact_near_2_to_the_24():
    """Millions of events in one step at four inputs, all inside one window: the float32
    convolution must still give the exact integer sums (every partial sum stays below 2^24)."""
    shape = (1, 2, 2)
    bundle = _single_event_bundle(shape, 3, 2, 1, 1)        # output 3 x 3 x 3; centre sees all
    bundle.v_width, bundle.threshold[0][:] = 32, (1 << 31) - 1
    bundle.max_input_events = (1 << 24) - 1
    rng = np.random.default_rng(0)
    bundle.weights[0][1:] = (rng.random(bundle.weights[0][1:].shape) < 0.5).astype(np.uint8)
    bundle.validate()
    on = torch.from_numpy(rng.integers(3_000_000, (1 << 22) - 1, (1, 2, 4)))
    off = torch.zeros_like(on)
    off[0, 1], on[0, 1] = on[0, 1] // 2, on[0, 1] // 2     # sample 1 mixes ON and OFF
    got = run_golden(bundle, on, off).v[0]
    net = (on - off)[0].reshape(2, 1, 2, 2).numpy()
    padded = np.pad(net, ((0, 0), (0, 0), (1, 1), (1, 1)))
    signed = bundle.weights[0].astype(np.int64) * 2 - 1
    expected = np.zeros((2, 3, 3, 3), dtype=np.int64)      # the same sums in int64, window by window
    for y in range(3):
        for x in range(3):
            expected[:, :, y, x] = np.einsum("bchw,ochw->bo", padded[:, :, y:y + 2, x:x + 2], signed)
    assert expected[0, 0, 1, 1] == int(on[0, 0].sum()) > 1 << 23
    assert got.numpy().tolist() == expected.reshape(2, -1).tolist()


def test_bsnn_eval_runs_a_convolutional_bundle_on_mnist(tmp_path):
    """The golden engine reads the input shape from the bundle; the dataset gives flat images in
    row-major (C, H, W) order: the report's accuracy is the golden model's on those images."""
    from bsnn.training.data import load_encoded
    shape = (1, 28, 28)
    c1 = _conv(shape, 4, 5, 2, 0, leak_v=1)
    p1 = LayerSpec.pool2d(output_shape(c1, shape), 2)
    bundle = random_bundle(np.random.default_rng(5), input_shape=shape, time_steps=3,
                           layers=[c1, p1, LayerSpec(size=10, reset="none")], max_input_events=784)
    save_bundle(bundle, tmp_path / "conv")
    report = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "bsnn", "eval", "--model", str(tmp_path / "conv"),
                          "--dataset", "mnist", "--limit", "30", "--quiet", "--json", str(report)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(report.read_text())
    data = load_encoded(bundle, "mnist", "test", 30)
    golden = run_golden(bundle, data.on, data.off)
    assert got["samples"] == 30
    assert got["accuracy"] == pytest.approx(float((golden.prediction == data.labels).double().mean()))
    assert got["sops_per_inference"] == pytest.approx(float(golden.sops.double().mean()))
    # Row-major pixels: conv input (0, y, x) is pixel (y, x); rate coding sends it
    # round(value * T / 255) events over the T steps.
    from bsnn.training.data import load_dataset
    image = torch.from_numpy(load_dataset("mnist", "test").images[0].astype(np.int64)).reshape(28, 28)
    assert torch.equal(data.on[:, 0].sum(dim=0).reshape(shape)[0], (2 * image * 3 + 255) // 510)



def test_batches_shrink_with_the_network_and_change_no_result(monkeypatch):
    """``batch_for_memory`` keeps a batch's [T, B, N] tensors within ``BATCH_VALUES``: the
    shipped Fashion-MNIST conv geometry (T = 8, 48,090 values) gets 174 samples where
    500 took 15 GiB; an MLP keeps the cap. Batching changes no result."""
    import bsnn.firmware_export.golden as golden
    from bsnn.evaluate import golden_in_batches
    from bsnn.firmware_export.golden import batch_for_memory
    assert batch_for_memory(8, 784 + 25088 + 6272 + 12544 + 3136 + 256 + 10, 500) == 174
    assert batch_for_memory(4, 784 + 400 * 3 + 10, 500) == 500
    assert batch_for_memory(1000, 10 ** 6, 500) == 1
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, spatial=True)
    on, off = random_counts(bundle, batch=9, rng=rng, polarity=True)
    whole = golden_in_batches(bundle, on, off, progress=False)
    per_step = bundle.time_steps * golden.network_values(bundle)
    monkeypatch.setattr(golden, "BATCH_VALUES", 2 * per_step)    # two samples a batch
    seen = []
    real = golden.run_golden
    monkeypatch.setattr(golden, "run_golden", lambda b, o, f: seen.append(o.shape[1]) or real(b, o, f))
    pieces = golden_in_batches(bundle, on, off, progress=False)
    assert seen == [2, 2, 2, 2, 1]
    for a, b in zip(whole[:3], pieces[:3]):
        assert torch.equal(a, b)
