import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.training.agmm import AGMM
from bsnn.training.model import BSNN, LayerConfig, binary_sign, round_ste, spike_fn


def test_binary_sign_ste():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    y = binary_sign(w)
    assert y.tolist() == [-1, -1, 1, 1, 1]
    y.sum().backward()
    assert w.grad.tolist() == [0, 1, 1, 1, 0]


def test_round_ste_and_spike_surrogate():
    x = torch.tensor([0.4, 0.5, 2.6, 100.0], requires_grad=True)
    y = round_ste(x, 1, 10)
    assert y.tolist() == [1, 1, 3, 10]
    y.sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 0]  # clamped entries get no gradient
    u = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0], requires_grad=True)
    s = spike_fn(u, torch.tensor(2.0))
    assert s.tolist() == [0, 0, 1, 1, 1]
    s.sum().backward()
    assert torch.allclose(u.grad, torch.tensor([0, 0.25, 0.5, 0.25, 0]))


def _assert_same(res, gold):
    assert len(res.spikes) == len(gold.spikes)
    for a, b in zip(res.spikes, gold.spikes):
        assert torch.equal(a, b)
    for a, b in zip(res.v, gold.v):
        assert torch.equal(a, b)
    assert torch.equal(res.count, gold.count)
    assert torch.equal(res.first, gold.first)
    assert torch.equal(res.prediction, gold.prediction)


@pytest.mark.parametrize("seed", range(40))
def test_hardware_mode_equals_golden_random_bundles(seed):
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng)
    on, off = random_counts(bundle, 6, rng)
    net = BSNN.from_bundle(bundle)
    res = net(on, off, hardware=True)
    _assert_same(res, run_golden(bundle, on, off))
    # the exported bundle of the network is the bundle itself
    assert net.to_bundle().normalized().same_as(bundle)


@pytest.mark.parametrize("seed", range(6))
def test_training_forward_is_integer_exact(seed):
    """The differentiable forward pass computes the same integers as the golden model."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    layers = [LayerConfig(12, leak_v=1, reset="subtract"), LayerConfig(9, current=True, leak_c=2, reset="zero"),
              LayerConfig(5, reset="none", learn_threshold=False)]
    net = BSNN(20, layers, 5, v_width=10, c_width=8, bias_width=6, readout="potential",
               max_input_events=40, agmm={"enabled": True}, weight_init=0.5)
    with torch.no_grad():
        for k in range(2):
            net.theta[k].uniform_(1, 6)
            net.bias[k].uniform_(-2.4, 2.4)
    bundle = net.to_bundle()
    bundle.validate()
    on, off = random_counts(bundle, 7, rng)
    tr = net(on, off)
    gold = run_golden(bundle, on, off)
    for a, b in zip(tr.spikes, gold.spikes):
        assert torch.equal(a.detach().bool(), b)
    assert torch.equal(tr.v[-1].detach().long(), gold.v[-1])
    assert torch.equal(tr.prediction, gold.prediction)
    _assert_same(net(on, off, hardware=True), gold)


def test_agmm_forward_identity_gradient_modulated():
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 10) * 5).round().requires_grad_(True)
    gate = AGMM(4, 10)
    y = gate(x)
    assert torch.equal(y, x)  # forward value is bit-exactly the integer current
    (y * torch.arange(10.0)).sum().backward()
    assert not torch.allclose(x.grad, torch.arange(10.0).expand(4, 3, 10))
    assert gate.alpha.grad is not None and gate.alpha.grad.abs().sum() > 0
    with torch.no_grad():
        g = gate.gate(x)
    assert g.shape == (4, 3, 1) and bool(((g > 0) & (g < 1)).all())


def test_agmm_on_off_same_forward_different_gradients():
    torch.manual_seed(0)
    layers = [LayerConfig(16), LayerConfig(4, reset="none", learn_threshold=False)]
    a = BSNN(30, layers, 3, agmm={"enabled": True}, theta_init=[3, 1])
    torch.manual_seed(0)
    b = BSNN(30, layers, 3, agmm={"enabled": False}, theta_init=[3, 1])
    b.load_state_dict({k: v for k, v in a.state_dict().items() if "gates" not in k})
    on = (torch.rand(3, 5, 30) < 0.4).long()
    ra, rb = a(on), b(on)
    assert torch.equal(ra.logits, rb.logits)
    y = torch.arange(5) % 4
    torch.nn.functional.cross_entropy(ra.logits, y).backward()
    torch.nn.functional.cross_entropy(rb.logits, y).backward()
    assert not torch.allclose(a.weights[0].grad, b.weights[0].grad)
    assert np.array_equal(a.to_bundle().weights[0], b.to_bundle().weights[0])


def test_agmm_alpha_min_clamps_gate():
    x = torch.ones(2, 1, 4)
    gate = AGMM(2, 4, alpha_min=0.0)
    with torch.no_grad():
        gate.alpha.copy_(torch.tensor([-1.0, 2.0]))
    g = gate.gate(x)
    assert g[0].item() == 0.0 and g[1].item() > 1.0
    assert AGMM(2, 4).gate(x).shape == (2, 1, 1)
