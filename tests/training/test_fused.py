"""The fused training forward (``_LayerScan``, ``_GradientGate``, golden ``count_first``, the faster
``binary_sign``) against the per-step autograd reference it replaces: forward values bit for bit
(sign of zero included), gradients up to the order of floating-point sums."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from bsnn.firmware_export.golden import count_first
from bsnn.training import agmm as agmm_mod
from bsnn.training.agmm import AGMM
from bsnn.training.model import BSNN, LayerConfig, binary_sign


def _reference_agmm_forward(self, x):
    """The three-term expression of AGMM mode "gradient" before ``_GradientGate``."""
    y = self.gate(x) * x
    if self.mode == "forward":
        return y
    return x + (y - y.detach())


def _run(net, on, off, reference, monkeypatch):
    net.zero_grad(set_to_none=True)
    if reference:  # per-step loop of BSNN._layer (the trace path) and the autograd AGMM
        with monkeypatch.context() as m:
            m.setattr(agmm_mod.AGMM, "forward", _reference_agmm_forward)
            res = net(on, off, trace=True)
    else:
        res = net(on, off)
    y = torch.arange(res.logits.shape[0]) % res.logits.shape[1]
    loss = F.cross_entropy(res.logits, y)
    # make every output carry a gradient: spikes, final potentials and currents of all layers
    loss = loss + 0.01 * sum(s.sum() for s in res.spikes) + 1e-3 * sum(v.sum() for v in res.v)
    loss = loss + 1e-3 * sum(c.sum() for c in res.c)
    loss.backward()
    return res, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _same_bits(a, b):
    return torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


CASES = [c for c in itertools.product([False, True], [0, 2], [0, 1], ["subtract", "zero", "none"],
                                      [False, True], ["potential", "spike_count", "first_spike"])
         if c[0] or not c[2]]


@pytest.mark.parametrize("widths", [(8, 7), (5, 4)], ids=["wide", "saturating"])
@pytest.mark.parametrize("case", CASES[::3] + CASES[1::7])
def test_fused_layer_equals_step_loop(case, widths, monkeypatch):
    current, leak_v, leak_c, reset, fire_once, readout = case
    seed = CASES.index(case)
    torch.manual_seed(seed)
    opts = dict(current=current, leak_v=leak_v, leak_c=leak_c, reset=reset, fire_once=fire_once)
    out = (LayerConfig(5, reset="none", learn_threshold=False) if readout == "potential"
           else LayerConfig(5, **opts))
    layers = [LayerConfig(12, **opts), LayerConfig(9, **opts), out]
    net = BSNN(20, layers, 5, v_width=widths[0], c_width=widths[1], bias_width=6, readout=readout,
               max_input_events=40, agmm={"enabled": True, "alpha_min": 0.0 if seed % 2 else None},
               weight_init=0.5)
    with torch.no_grad():
        for k, cfg in enumerate(layers):
            if cfg.learn_threshold:
                net.theta[k].uniform_(1, 6)
            net.bias[k].uniform_(-3.4, 3.4)
    on, off = torch.randint(0, 3, (5, 7, 20)), torch.randint(0, 2, (5, 7, 20))
    r_ref, g_ref = _run(net, on, off, True, monkeypatch)
    r_new, g_new = _run(net, on, off, False, monkeypatch)
    for a, b in zip(r_ref.spikes + r_ref.v + r_ref.c, r_new.spikes + r_new.v + r_new.c):
        assert _same_bits(a.detach(), b.detach())
    assert _same_bits(r_ref.logits.detach(), r_new.logits.detach())
    assert torch.equal(r_ref.count, r_new.count) and torch.equal(r_ref.first, r_new.first)
    assert torch.equal(r_ref.prediction, r_new.prediction)
    assert g_ref.keys() == g_new.keys()
    for name in g_ref:
        assert torch.allclose(g_ref[name], g_new[name], rtol=1e-5, atol=1e-7), name


def test_gradient_gate_equals_three_term_expression():
    torch.manual_seed(1)
    for alpha_min in (None, 0.0):
        x = (torch.randn(4, 3, 10) * 5).round().requires_grad_(True)
        gate = AGMM(4, 10, alpha_min=alpha_min)
        with torch.no_grad():
            gate.alpha.copy_(torch.tensor([1.0, -0.5, 2.0, 0.3]))
        w = torch.randn(4, 3, 10)
        y = gate(x)
        assert _same_bits(y.detach(), x.detach())
        (y * w).sum().backward()
        gx, ga = x.grad.clone(), gate.alpha.grad.clone()
        x.grad = gate.alpha.grad = None
        (_reference_agmm_forward(gate, x) * w).sum().backward()
        assert torch.allclose(gx, x.grad, rtol=1e-5, atol=1e-6)
        assert torch.allclose(ga, gate.alpha.grad, rtol=1e-5, atol=1e-6)


def test_count_first_and_binary_sign():
    torch.manual_seed(2)
    S = (torch.rand(6, 4, 9) < 0.2).float()
    count, first = count_first(S)
    assert torch.equal(count, S.sum(0))
    for b in range(4):
        for j in range(9):
            idx = torch.nonzero(S[:, b, j]).flatten()
            assert first[b, j].item() == (idx[0].item() if len(idx) else -1)
    w = torch.tensor([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 1.5, float("nan")], requires_grad=True)
    y = binary_sign(w)
    assert y.tolist()[:7] == [-1, -1, 1, 1, 1, 1, 1] and y[7].item() == -1  # as w >= 0
    y.backward(torch.full_like(w, 3.0))
    assert w.grad.tolist() == [0, 3, 3, 3, 3, 3, 0, 0]  # where |w| <= 1
