"""The golden model against the plain per-event reference, on random cases of every mode, and its
layer functions (which training calls too) on the float tensors and with the gradients training uses."""
import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import counts_from_events, events_from_counts, random_counts
from bsnn.firmware_export.golden import (EventError, NeuronState, heaviside, layer_step, run_golden,
                                         run_layer, synaptic_input)
from tests.reference_model import reference_run


def _compare(bundle, on, off, rng=None):
    """Golden model == reference on every sample: spikes of every layer and step, final states,
    counts, first spikes, prediction, events and SOPs per layer (dense, conv2d and pool2d)."""
    res = run_golden(bundle, on, off)
    assert torch.equal(res.sops, res.sops_per_layer.sum(dim=0))
    for b in range(on.shape[1]):
        ref = reference_run(bundle, events_from_counts(on, off, sample=b, rng=rng))
        for k in range(len(bundle.layers)):
            got = [torch.nonzero(res.spikes[k][t, b]).flatten().tolist() for t in range(bundle.time_steps)]
            assert got == ref["spikes"][k], f"layer {k + 1} ({bundle.layers[k].kind}) spikes differ in sample {b}"
            assert res.v[k][b].tolist() == ref["v"][k]
            assert res.c[k][b].tolist() == ref["c"][k]
        assert res.count[b].tolist() == ref["count"]
        assert res.first[b].tolist() == ref["first"]
        assert int(res.prediction[b]) == ref["prediction"]
        assert res.events_per_layer[:, b].tolist() == ref["events"]
        assert res.sops_per_layer[:, b].tolist() == ref["sops_per_layer"]
        assert int(res.sops[b]) == ref["sops"]
    return res


@pytest.mark.parametrize("seed", range(60))
def test_golden_matches_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng)
    on, off = random_counts(bundle, batch=3, rng=rng, polarity=bool(seed % 2))
    _compare(bundle, on, off, rng=rng)


@pytest.mark.parametrize("seed", range(12))
def test_golden_matches_reference_at_saturation(seed):
    """Narrow widths, all-positive or all-negative weights and large biases drive both states
    into saturation in both directions."""
    rng = np.random.default_rng(1000 + seed)
    sign = 1 if seed % 2 else 0
    sizes = [24, 20, 6]
    layers = [LayerSpec(size=n, current=bool(seed % 3 == 0), leak_v=seed % 3, leak_c=seed % 2,
                        reset=("subtract", "zero", "none")[seed % 3], fire_once=bool(seed % 4 == 1))
              for n in sizes[1:]]
    bundle = random_bundle(rng, sizes=sizes, layers=layers, v_width=4, c_width=3, bias_width=4,
                           time_steps=6)
    bundle.weights = [np.full_like(w, sign) for w in bundle.weights]
    bundle.threshold = [np.full_like(t, 7) for t in bundle.threshold]
    bundle.bias = [np.full_like(b, 7 if sign else -8) for b in bundle.bias]
    bundle.validate()
    on = torch.ones(6, 2, 24, dtype=torch.int64)
    res = _compare(bundle, on, None)
    extreme = 7 if sign else -8
    assert (res.v[0] == extreme).any() or res.spikes[0].any()


def test_empty_input_gives_bias_driven_activity():
    rng = np.random.default_rng(5)
    bundle = random_bundle(rng, sizes=[8, 5, 3])
    on = torch.zeros(bundle.time_steps, 2, 8, dtype=torch.int64)
    res = _compare(bundle, on, None)
    assert res.events_per_layer[0].sum() == 0


def test_potential_readout_tie_break_prefers_lowest_index():
    rng = np.random.default_rng(1)
    bundle = random_bundle(rng, sizes=[4, 3], readout="potential",
                           layers=[LayerSpec(size=3, reset="none")], time_steps=1)
    bundle.weights = [np.ones((4, 3), dtype=np.uint8)]
    bundle.bias = [np.zeros(3, dtype=np.int64)]
    bundle.threshold = [np.full(3, 100, dtype=np.int64)] if bundle.v_width > 7 else bundle.threshold
    on = torch.ones(1, 1, 4, dtype=torch.int64)
    assert int(run_golden(bundle, on).prediction[0]) == 0


def test_first_spike_readout_prefers_earlier_spike_over_potential():
    bundle = random_bundle(np.random.default_rng(2), sizes=[2, 2], readout="first_spike",
                           layers=[LayerSpec(size=2, reset="none", fire_once=True)], time_steps=3,
                           v_width=8, bias_width=8)
    bundle.weights = [np.array([[0, 1], [0, 1]], dtype=np.uint8)]
    bundle.bias = [np.array([5, 0], dtype=np.int64)]       # neuron 0: 3, 8, 13 -> fires at t=2
    bundle.threshold = [np.array([10, 2], dtype=np.int64)]  # neuron 1 fires at t=0
    on = torch.tensor([[[1, 1]], [[0, 0]], [[0, 0]]], dtype=torch.int64)
    res = run_golden(bundle, on)
    assert res.first[0].tolist() == [2, 0] and int(res.v[0][0, 0]) > int(res.v[0][0, 1])
    assert int(res.prediction[0]) == 1


def test_off_events_invert_the_weight():
    bundle = random_bundle(np.random.default_rng(3), sizes=[1, 2], time_steps=1,
                           layers=[LayerSpec(size=2, reset="none")], v_width=8, bias_width=4,
                           max_input_events=8)
    bundle.weights = [np.array([[1, 0]], dtype=np.uint8)]
    bundle.bias = [np.zeros(2, dtype=np.int64)]
    on = torch.zeros(1, 1, 1, dtype=torch.int64)
    off = torch.full((1, 1, 1), 3, dtype=torch.int64)
    assert run_golden(bundle, on, off).v[0][0].tolist() == [-3, 3]


def test_bad_events_are_refused_with_one_line_errors():
    bundle = random_bundle(np.random.default_rng(4), sizes=[5, 3])
    T = bundle.time_steps
    with pytest.raises(EventError, match=r"shape must be \[T="):
        run_golden(bundle, torch.zeros(T + 1, 1, 5, dtype=torch.int64))
    with pytest.raises(EventError, match="integer tensor"):
        run_golden(bundle, torch.zeros(T, 1, 5))
    with pytest.raises(EventError, match="exceed max_input_events"):
        run_golden(bundle, torch.full((T, 1, 5), bundle.max_input_events, dtype=torch.int64))
    with pytest.raises(EventError, match="index 5 out of range"):
        counts_from_events(bundle, [[[(5, 1)]] + [[] for _ in range(T - 1)]])
    with pytest.raises(EventError, match="polarity 2"):
        counts_from_events(bundle, [[[(0, 2)]] + [[] for _ in range(T - 1)]])


def test_event_list_round_trip():
    rng = np.random.default_rng(9)
    bundle = random_bundle(rng, sizes=[7, 3])
    on, off = random_counts(bundle, 4, rng)
    lists = [events_from_counts(on, off, sample=b, rng=rng) for b in range(4)]
    on2, off2 = counts_from_events(bundle, lists)
    assert torch.equal(on, on2) and torch.equal(off, off2)


@pytest.mark.parametrize("seed", range(8))
def test_layer_functions_give_the_same_integers_on_float_tensors(seed):
    """Training runs ``synaptic_input``/``run_layer`` on float32 holding integers: the values
    equal those on int64, layer by layer, saturation included (narrow widths on odd seeds)."""
    rng = np.random.default_rng(200 + seed)
    widths = dict(v_width=5, c_width=4, bias_width=4) if seed % 2 else {}
    bundle = random_bundle(rng, **widths)
    on, off = random_counts(bundle, 4, rng)
    x = {torch.int64: on - off, torch.float32: (on - off).float()}
    for k, layer in enumerate(bundle.layers):
        runs = {}
        for dtype in x:
            w = torch.from_numpy(bundle.weights[k].astype("float32") * 2 - 1)
            syn = synaptic_input(x[dtype].float(), w).round().to(dtype)
            bias = torch.from_numpy(bundle.bias[k]).to(dtype)
            theta = torch.from_numpy(bundle.threshold[k]).to(dtype)
            runs[dtype] = run_layer(layer, bundle.v_width, bundle.c_width, syn, bias, theta,
                                    record=("u", "v_exact", "drive"))
            x[dtype] = runs[dtype].spikes
        a, b = runs[torch.int64], runs[torch.float32]
        for name in ("u", "v_exact", "drive"):
            assert torch.equal(a.recorded[name], b.recorded[name].long())
        assert torch.equal(a.spikes, b.spikes.long())
        assert torch.equal(a.state.v, b.state.v.long()) and torch.equal(a.state.c, b.state.c.long())
    gold = run_golden(bundle, on, off)
    assert torch.equal(gold.spikes[-1], x[torch.float32].bool())


def test_layer_step_gradient_paths():
    """The leak passes the gradient of ``x / 2^k`` through its floor; the threshold reaches the
    spike only through ``spike(u - theta)`` (training's surrogate); the reset carries no gradient."""
    layer = LayerSpec(size=3, leak_v=1, reset="subtract")
    v = torch.tensor([[5.0, -3.0, 8.0]], requires_grad=True)
    theta = torch.tensor([4.0, 4.0, 4.0], requires_grad=True)
    zero = torch.zeros(1, 3)
    seen = []

    def spike(d):
        seen.append(d)
        return heaviside(d)

    step = layer_step(layer, 8, 8, NeuronState(v, zero, zero), torch.ones(1, 3), torch.zeros(3), theta, spike)
    # v - (v >> 1) + 1 = 4, 0, 5: the first and the last reach theta and lose it
    assert step.u.tolist() == [[4, 0, 5]] and step.spikes.tolist() == [[1, 0, 1]]
    assert step.state.v.tolist() == [[0, 0, 1]]
    assert torch.equal(seen[0], step.u - theta)
    step.state.v.sum().backward()
    assert v.grad.tolist() == [[0.5, 0.5, 0.5]] and theta.grad is None
