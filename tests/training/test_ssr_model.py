"""SSR hooks in the model (trace=True) and training: traces, gradients, first_spike readout."""
import pytest
import torch

from bsnn.training.model import BSNN, LayerConfig
from bsnn.training.ssr import SSRConfig, ssr_penalty


def net(fire_once=False, current=False, reset="subtract", readout="potential", T=4):
    torch.manual_seed(0)
    hidden = [LayerConfig(12, current=current, reset=reset, fire_once=fire_once),
              LayerConfig(9, current=current, reset=reset, fire_once=fire_once)]
    out = (LayerConfig(4, reset="none", learn_threshold=False) if readout == "potential"
           else LayerConfig(4, current=current, reset=reset, fire_once=fire_once))
    m = BSNN(20, hidden + [out], T, readout=readout, weight_init=0.5)
    with torch.no_grad():
        for k in range(2):
            m.theta[k].fill_(3.0)
        if readout != "potential":
            m.theta[2].fill_(2.0)
    return m


def inputs(T=4, B=5):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(T, B, 20, generator=g) < 0.5).long()


@pytest.mark.parametrize("kind", ["if", "ramp"])
def test_trace_matches_forward_and_hardware(kind):
    opts = dict(fire_once=True, current=True, reset="none") if kind == "ramp" else {}
    m = net(**opts)
    on = inputs()
    a = m(on)
    b = m(on, trace=True)
    assert torch.equal(a.logits, b.logits) and len(b.traces) == 3 and not a.traces
    hw = m(on, hardware=True, trace=True)
    for k, tr in enumerate(hw.traces):
        above = tr["u"] >= tr["theta"]
        if kind == "ramp" and k < 2:  # fire once: the first step above threshold
            first = above & (torch.cumsum(above.long(), 0) == 1)
            assert torch.equal(first, hw.spikes[k])
        elif k < 2:
            assert torch.equal(above, hw.spikes[k])
        # training forward computes the same integers (hardware mode: int64)
        assert tr["u"].dtype == torch.int64
        assert torch.equal(b.traces[k]["u"].long(), tr["u"])
        assert torch.equal(b.traces[k]["slope"].long(), tr["slope"])


@pytest.mark.parametrize("method", ["mssr", "fssr", "mem"])
def test_gradients_reach_weights_bias_threshold(method):
    m = net()
    res = m(inputs(), trace=True)
    r = ssr_penalty(res.traces, SSRConfig(method, 1.0, v_hat=0.5))
    assert float(r.detach()) > 0
    r.backward()
    for k in range(2):
        assert m.weights[k].grad is not None and float(m.weights[k].grad.abs().sum()) > 0
        assert float(m.bias[k].grad.abs().sum()) > 0
        assert float(m.theta[k].grad.abs().sum()) > 0
    # the penalty pushes thresholds up (fewer spikes): dR/dtheta <= 0
    assert float(m.theta[0].grad.sum()) < 0


def test_first_spike_readout_trains_and_matches_hardware_prediction():
    m = net(fire_once=True, current=True, reset="none", readout="first_spike", T=6)
    on = inputs(T=6)
    res = m(on)
    hw = m(on, hardware=True)
    assert torch.equal(res.prediction, hw.prediction)
    earliness = torch.where(hw.first >= 0, 6 - hw.first, torch.zeros_like(hw.first)).float()
    frac = res.logits.detach() / m.log_logit_scale.exp().detach() - earliness
    assert float(frac.abs().max()) <= 0.5 + 1e-6
    torch.nn.functional.cross_entropy(res.logits, torch.zeros(5, dtype=torch.long)).backward()
    assert float(m.weights[0].grad.abs().sum()) > 0


def test_local_penalty_does_not_reach_the_layer_below():
    from bsnn.training.ssr import layer_penalty
    m = net()
    res = m(inputs(), trace=True)
    layer_penalty(res.traces[1], SSRConfig("mssr", 1.0)).sum().backward()
    assert m.weights[0].grad is None or float(m.weights[0].grad.abs().sum()) == 0
    assert float(m.weights[1].grad.abs().sum()) > 0 and float(m.theta[1].grad.abs().sum()) > 0
    m.zero_grad()
    res = m(inputs(), trace=True)
    layer_penalty(res.traces[1], SSRConfig("mssr", 1.0, local=False)).sum().backward()
    assert float(m.weights[0].grad.abs().sum()) > 0
