"""Convolutional BSNNs in training (docs/semantics.md section 10): the hardware mode and the
training forward pass compute the golden model's integers, spike for spike, on random
convolutional bundles; configs build the layers they name and refuse what does not fit."""
import json

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import load_bundle, random_bundle
from bsnn.firmware_export.errors import ConfigError
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.training.builders import build_model
from bsnn.training.export import export_checkpoint
from bsnn.training.model import BSNN
from bsnn.training.train import load_config, train
from .conftest import need


def _counts(bundle, rng, batch=5):
    return random_counts(bundle, batch, rng)


@pytest.mark.parametrize("seed", range(24))
def test_hardware_and_training_forward_equal_golden_on_random_conv_bundles(seed):
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng, spatial=True)
    on, off = _counts(bundle, rng)
    gold = run_golden(bundle, on, off)
    net = BSNN.from_bundle(bundle)
    hw = net(on, off, hardware=True)
    assert len(hw.spikes) == len(gold.spikes)
    for a, b in zip(hw.spikes, gold.spikes):
        assert torch.equal(a, torch.as_tensor(b).bool())
    assert torch.equal(hw.v[-1], torch.as_tensor(gold.v[-1]))
    assert torch.equal(hw.count, torch.as_tensor(gold.count))
    assert torch.equal(hw.first, torch.as_tensor(gold.first))
    assert torch.equal(hw.prediction, torch.as_tensor(gold.prediction))
    # the differentiable forward pass computes the same integers (float32 holding them)
    tr = net(on, off)
    for a, b in zip(tr.spikes, hw.spikes):
        assert torch.equal(a.bool(), b)
    # and the export gives the bundle back
    again = net.to_bundle(metadata=bundle.metadata)
    for k, layer in enumerate(bundle.layers):
        assert again.layers[k] == layer
        assert np.array_equal(again.weights[k], bundle.weights[k])
        assert np.array_equal(again.bias[k], bundle.bias[k])
        assert np.array_equal(again.threshold[k], bundle.threshold[k])
    assert tuple(again.input_shape) == tuple(bundle.input_shape)
    assert again.input_polarity == bundle.input_polarity


def test_gradients_reach_conv_kernels_and_per_channel_parameters():
    cfg = load_config(None, {"model": {"features": ["6c3p1", "pool2", "8c3s2"], "hidden": [16]},
                             "agmm": {"enabled": True}})
    net = build_model(cfg, 784, 784)
    assert [c.kind for c in net.layer_cfgs] == ["conv2d", "pool2d", "conv2d", "dense", "dense"]
    assert [c.size for c in net.layer_cfgs] == [6 * 28 * 28, 6 * 14 * 14, 8 * 6 * 6, 16, 10]
    assert net.weights[0].shape == (6, 1, 3, 3) and net.theta[0].shape == (6,)
    assert net.weights[1].numel() == 0 and not net.weights[1].requires_grad
    on = (torch.rand(4, 16, 784) < 0.2).long()
    net.init_thresholds(on)
    out = net(on.float())
    torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 10, (16,))).backward()
    for k in (0, 2, 3):
        assert float(net.weights[k].grad.abs().sum()) > 0
        assert float(net.theta[k].grad.abs().sum()) > 0


@pytest.mark.parametrize("features, message", [
    (["32x5"], "model.features[0]: '32x5' is not"),
    (["pool2"], "model.features[0]: 'pool2': pooling reads spikes"),
    (["4c5", "8c30"], "model.features[1]: '8c30': a 30x30 window does not fit the 24x24 map"),
    (["4c3s4"], "need kernel >= 1, 1 <= stride <= kernel"),
    (["4c3p3"], "0 <= padding < kernel"),
])
def test_feature_specs_that_do_not_fit_are_one_line_config_errors(features, message):
    cfg = load_config(None, {"model": {"features": features}})
    with pytest.raises(ConfigError) as err:
        build_model(cfg, 784, 784)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_event_input_with_polarity_channels_reads_two_channel_sensor_map():
    cfg = load_config(None, {"data": {"dataset": "nmnist"},
                             "encoding": {"kind": "events", "time_steps": 4},
                             "model": {"features": ["4c5s2", "pool2"], "hidden": [],
                                       "input_polarity": "channels"}})
    net = build_model(cfg, 34 * 34, 500)
    assert net.input_shape == (2, 34, 34) and net.input_units == 2 * 34 * 34
    bundle = net.to_bundle()
    bundle.validate("conv nmnist")
    rng = np.random.default_rng(0)
    on, off = _counts(bundle, rng)
    gold = run_golden(bundle, on, off)
    assert torch.equal(net(on, off, hardware=True).prediction, torch.as_tensor(gold.prediction))


@need("mnist")
def test_tiny_conv_training_learns_and_exports_exactly(tmp_path):
    cfg = load_config(None, {
        "name": "tiny_conv", "data": {"dataset": "mnist", "train_limit": 384, "test_limit": 128},
        "encoding": {"kind": "rate", "time_steps": 2},
        "model": {"features": ["4c5", "pool2"], "hidden": []}, "agmm": {"enabled": True},
        "train": {"epochs": 2, "batch_size": 64, "lr": 5e-3, "out_dir": str(tmp_path / "run"),
                  "eval_batch_size": 128, "init_batch": 128},
        "export": {"dir": None}})
    train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["test_acc"] > 0.3
    meta = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "bundle")
    assert meta["test_acc_hardware_exact"] == hist[-1]["test_acc"]
    bundle = load_bundle(tmp_path / "bundle")
    assert [l.kind for l in bundle.layers] == ["conv2d", "pool2d", "dense"]
    assert tuple(bundle.input_shape) == (1, 28, 28)


def test_init_from_matching_layers_loads_the_trained_convolutions_only():
    """``train.init_layers = "matching"``: a network that adds a hidden dense layer starts from
    a trained one's convolutions (weights, biases, thresholds exactly); the new dense layers
    stay fresh, their thresholds set from the spikes of the loaded convolutions. ``"all"``
    refuses the different network in one line."""
    from bsnn.training.train import init_from_state
    feats = ["4c3", "pool2"]
    src = build_model(load_config(None, {"model": {"features": feats, "hidden": []}}), 784, 784)
    on = (torch.rand(4, 32, 784) < 0.2).long()
    src.init_thresholds(on)
    with torch.no_grad():
        for p in (src.weights[0], src.bias[0], src.theta[0]):
            p.add_(torch.randn_like(p))
    net = build_model(load_config(None, {"model": {"features": feats, "hidden": [12]}}), 784, 784)
    fresh = [w.detach().clone() for w in net.weights]
    with pytest.raises(ConfigError) as err:
        init_from_state(net, src.state_dict(), "src.pt", "all")
    assert "src.pt is a different network" in str(err.value) and "\n" not in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(fresh, net.weights))   # nothing loaded
    loaded = init_from_state(net, src.state_dict(), "src.pt", "matching")
    assert loaded == {0, 1}
    for k in (0, 1):
        for a, b in ((net.weights, src.weights), (net.bias, src.bias), (net.theta, src.theta)):
            assert torch.equal(a[k], b[k])
    assert torch.equal(net.weights[2], fresh[2]) and torch.equal(net.weights[3], fresh[3])
    theta0 = net.theta[0].detach().clone()
    net.init_thresholds(on, keep=loaded)
    assert torch.equal(net.theta[0], theta0)                     # the loaded layer kept its own
    x = net.pool(1, net._layer(0, net.synaptic(0, net.input_events(on, None, torch.float32),
                                               net.signed_weights(0, True, torch.float32)),
                               True)[0].float())
    expect = max(1.0, round(float(net.synaptic(2, x, net.signed_weights(2, True, torch.float32)).std())))
    assert float(net.theta[2][0].detach()) == min(expect, net.theta_max)


def test_init_from_matching_loads_every_layer_across_time_steps():
    """``"matching"`` from a network trained with other time steps: every layer loads (weights,
    biases, thresholds exactly) and only the AGMM gates, one entry per time step, stay fresh.
    Before, a gate's other shape kept its whole layer from loading, so nothing loaded."""
    from bsnn.training.train import fresh_gates, init_from_state
    def net(T):
        return build_model(load_config(None, {"model": {"hidden": [12]}, "agmm": {"enabled": True},
                                              "encoding": {"kind": "rate", "time_steps": T}}),
                           784, 784)
    src, dst = net(4), net(3)
    with torch.no_grad():
        for p in list(src.weights) + list(src.bias) + list(src.theta):
            p.add_(torch.randn_like(p))
    gates = [g.alpha.detach().clone() for g in dst.gates]
    assert [tuple(g.alpha.shape) for g in src.gates] != [tuple(g.shape) for g in gates]
    loaded = init_from_state(dst, src.state_dict(), "src.pt", "matching")
    assert loaded == {0, 1}
    for a, b in ((dst.weights, src.weights), (dst.bias, src.bias), (dst.theta, src.theta)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(g.alpha, h) for g, h in zip(dst.gates, gates))
    assert fresh_gates(dst, src.state_dict(), loaded) == ["gates.0.alpha", "gates.1.alpha"]
    assert fresh_gates(src, src.state_dict(), {0, 1}) == []
    with pytest.raises(ConfigError):                 # "all" still wants the same network
        init_from_state(net(3), src.state_dict(), "src.pt", "all")
