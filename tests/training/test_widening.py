"""Widening a trained network by duplication (``train.init_layers = "widen"``,
training/widening.py): the wider network fires the old spikes, tiled, and predicts the same."""
import pytest
import torch

from bsnn.firmware_export.errors import ConfigError

from bsnn.firmware_export.spatial import output_shape
from bsnn.training.builders import build_model
from bsnn.training.train import load_config, train
from bsnn.training.widening import JITTER, WidenError, widen_state, widening_factors
from .conftest import need


def _net(features, hidden, **model):
    cfg = load_config(None, {"model": {"features": features, "hidden": hidden, **model},
                             "agmm": {"enabled": True}, "encoding": {"kind": "rate", "time_steps": 4}})
    return build_model(cfg, 784, 784)


def _trained_like(net, on):
    """Thresholds from the data, then latent weights, biases and thresholds moved off their
    initial values (fractions included), as training leaves them."""
    net.init_thresholds(on)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for k in net.neuron_layers:
            net.weights[k].add_(0.1 * torch.randn(net.weights[k].shape, generator=gen)).clamp_(-1, 1)
            if net.bias[k].requires_grad:
                net.bias[k].add_(3 * torch.randn(net.bias[k].shape, generator=gen))
            if net.theta[k].requires_grad:
                net.theta[k].add_(torch.rand(net.theta[k].shape, generator=gen) - 0.5).clamp_(min=1)
    return net


def _tile(spikes, shape, m):
    """Old spikes ``[T, B, N]`` of a layer, as the widened layer (``m`` times the channels of a
    ``shape`` map, or ``m`` times the neurons) fires them."""
    T, B = spikes.shape[:2]
    if shape is None:
        return spikes.repeat(1, 1, m)
    return spikes.reshape(T, B, *shape).repeat(1, 1, m, 1, 1).reshape(T, B, -1)


def test_widened_network_fires_the_old_spikes_tiled_and_predicts_the_same():
    on = (torch.rand(4, 64, 784, generator=torch.Generator().manual_seed(1)) < 0.3).long()
    old = _trained_like(_net(["4c3p1", "pool2", "6c3s2"], [10]), on)
    new = _net(["8c3p1", "pool2", "12c3s2"], [30])
    factors = widen_state(new, old.state_dict(), torch.Generator().manual_seed(0))
    assert factors == [(1, 2), (2, 2), (2, 2), (2, 3), (3, 1)]
    a, b = old(on, hardware=True), new(on, hardware=True)
    for k, cfg in enumerate(old.layer_cfgs):
        shape = None if cfg.kind == "dense" else output_shape(cfg, old.in_shapes[k])
        if k < len(old.layer_cfgs) - 1:   # (the potential readout never fires)
            assert a.spikes[k].any(), k   # the comparison is not of silent layers
        assert torch.equal(b.spikes[k], _tile(a.spikes[k], shape, factors[k][1])), k
    # the output layer (potential readout) sees every hidden spike three times
    assert torch.equal(b.v[-1], 3 * a.v[-1])
    assert torch.equal(b.prediction, a.prediction)
    # the training forward pass computes the same spikes
    for x, y in zip(new(on).spikes, b.spikes):
        assert torch.equal(x.bool(), y)
    # integer thresholds and biases are the old ones times the input's widening
    for k in new.neuron_layers:
        m_in, m_out = factors[k]
        (old_bias, old_theta), (new_bias, new_theta) = old.exported_bias_theta(k), new.exported_bias_theta(k)
        assert torch.equal(new_bias, (m_in * old_bias).repeat(m_out)), k
        if new.theta[k].requires_grad:    # not the potential readout's fixed threshold
            assert torch.equal(new_theta, (m_in * old_theta).repeat(m_out)), k
    # same signs; the copies' latent magnitudes differ, within the jitter
    w_old, w_new = old.weights[2].detach(), new.weights[2].detach()
    tiled = w_old.repeat(2, 2, 1, 1)
    assert torch.equal(w_new >= 0, tiled >= 0)
    ratio = (w_new / tiled)[tiled != 0]
    assert ratio.min() >= 1 - JITTER and ratio.max() <= 1 + JITTER and ratio.std() > 0.1
    assert not torch.equal(w_new[:6], w_new[6:])


def test_widening_refuses_networks_that_do_not_tile():
    old = _net(["4c3p1", "pool2"], [10])
    for features, hidden, message in (
            (["6c3p1", "pool2"], [10], "layer 0 channels: 6 is not a multiple of the checkpoint's 4"),
            (["8c5p2", "pool2"], [10], "layer 0: kernel (5, 5) here, (3, 3) in the checkpoint"),
            (["4c3p1", "pool2"], [15], "layer 2 neurons: 15 is not a multiple of the checkpoint's 10"),
            (["4c3p1", "pool2"], [10, 10], "layer 4: the checkpoint has no weights.4 (it has fewer layers)"),
            (["4c3p1", "4c3"], [10], "layer 1: a conv2d layer here, another kind in the checkpoint")):
        with pytest.raises(WidenError) as err:
            widening_factors(_net(features, hidden), old.state_dict())
        assert message in str(err.value) and "\n" not in str(err.value), features
    wider_out = _net(["4c3p1", "pool2"], [10], num_classes=20)
    with pytest.raises(WidenError, match="the output layer must keep the checkpoint's classes"):
        widening_factors(wider_out, old.state_dict())


@need("mnist")
def test_widen_run_starts_from_the_checkpoints_predictions(tmp_path, capsys):
    base = {"data": {"dataset": "mnist", "train_limit": 256, "test_limit": 128},
            "encoding": {"kind": "rate", "time_steps": 3}, "agmm": {"enabled": True},
            "train": {"epochs": 1, "batch_size": 64, "lr": 5e-3, "eval_batch_size": 128,
                      "init_batch": 128}, "export": {"dir": None}}
    small = load_config(None, {**base, "model": {"features": ["4c5s2"], "hidden": [12]},
                               "train": {**base["train"], "out_dir": str(tmp_path / "small")}})
    first = train(small, progress=False)
    wide = load_config(None, {**base, "model": {"features": ["8c5s2"], "hidden": [24]},
                              "train": {**base["train"], "out_dir": str(tmp_path / "wide"),
                                        "lr": 1e-9, "lr_param": 0.0, "lr_gate": 0.0,
                                        "init_from": str(tmp_path / "small" / "last.pt"),
                                        "init_layers": "widen"}})
    uneven = load_config(None, {**base, "model": {"features": ["8c5s2"], "hidden": [18]},
                                "train": {**wide["train"], "out_dir": str(tmp_path / "uneven")}})
    with pytest.raises(ConfigError) as err:     # (the CLI prints it as one line, exit 2)
        train(uneven, progress=False)
    assert "cannot be widened into this network (layer 1 neurons: 18 is not a multiple of the " \
           "checkpoint's 12)" in str(err.value) and "\n" not in str(err.value)
    second = train(wide, progress=False)
    assert "widened by duplication; 0 of 128 predictions of the init batch differ" in capsys.readouterr().out
    # with (almost) no learning, the widened network scores what the checkpoint scored
    assert second["final"]["test_acc"] == first["final"]["test_acc"]
