"""SSR penalties (training/ssr.py, docs/ssr.md): hand-computed values and gradient flow."""
import pytest
import torch

from bsnn.training.ssr import SSRConfig, fssr_terms, layer_penalty, mem_terms, mssr_terms, ssr_penalty


def one_neuron():
    # T=4, one sample, one neuron, threshold 10; spikes at steps 1 and 3.
    u = torch.tensor([5.0, 12.0, 8.0, 15.0]).view(4, 1, 1)
    slope = torch.tensor([5.0, 7.0, -4.0, 9.0]).view(4, 1, 1)
    s = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(4, 1, 1)
    return u, slope, torch.tensor([10.0]), s


def test_mssr_hand_computed():
    u, slope, theta, s = one_neuron()
    # step 1: delta 2, S 7, r 2: 2 + 9 + 16 = 27; step 3: delta 5, r 0: 5
    assert float(mssr_terms(u, slope, theta, s)) == 32.0
    # horizon 1: step 1 adds 23, step 3 adds 14
    assert float(mssr_terms(u, slope, theta, s, horizon=1)) == 32.0 + 23 + 14


def test_mssr_negative_slope_clips_each_term():
    u = torch.tensor([13.0, 0, 0, 0]).view(4, 1, 1)
    slope = torch.tensor([-2.0, 0, 0, 0]).view(4, 1, 1)
    s = torch.tensor([1.0, 0, 0, 0]).view(4, 1, 1)
    # delta 3, S -2, r 3: 3 + 1 + 0 + 0
    assert float(mssr_terms(u, slope, torch.tensor([10.0]), s)) == 4.0
    # F-SSR: the upper limit of a falling continuation is its start: delta = 3
    assert float(fssr_terms(u, slope, torch.tensor([10.0]), s)) == 3.0


def test_fssr_hand_computed():
    u, slope, theta, s = one_neuron()
    # step 1: 2 + 2*7 = 16; step 3: 5 + 0 = 5
    assert float(fssr_terms(u, slope, theta, s)) == 21.0


def test_mem_baseline_hand_computed():
    u, _, theta, _ = one_neuron()
    assert float(mem_terms(u, theta, 0.5)) == 0 + 7 + 3 + 10
    assert float(mem_terms(u, theta, 1.0)) == 0 + 2 + 0 + 5


def test_layer_penalty_in_threshold_units_and_per_neuron_average():
    u, slope, theta, s = one_neuron()
    tr = {"u": u, "slope": slope, "theta": theta, "spikes": s}
    assert float(layer_penalty(tr, SSRConfig("mssr", 1.0))) == pytest.approx(3.2)
    assert float(layer_penalty(tr, SSRConfig("fssr", 1.0))) == pytest.approx(2.1)
    assert float(layer_penalty(tr, SSRConfig("mem", 1.0, v_hat=0.5))) == pytest.approx(2.0)
    # two hidden layers (1 and 3 neurons) plus an output layer that is not regularized
    z = {k: torch.zeros(4, 1, 3) for k in ("u", "slope", "spikes")}
    z["theta"] = torch.ones(3)
    out = {"u": torch.full((4, 1, 2), 100.0), "slope": torch.ones(4, 1, 2),
           "spikes": torch.ones(4, 1, 2), "theta": torch.ones(2)}
    assert float(ssr_penalty([tr, z, out], SSRConfig("mssr", 1.0))) == pytest.approx(3.2 / 4)
    assert float(ssr_penalty([tr, z, out], SSRConfig("mssr", 1.0, layers="all"))) > 3.2 / 4


def test_ramp_neuron_mssr_is_the_discrete_area_of_its_continuation():
    """A fire-once ramp neuron (current, no leak, no reset) keeps its slope after firing: the
    causal continuation is the real trajectory when no input arrives after the spike."""
    T, theta, b = 6, 10.0, 0.0
    I = torch.tensor([3.0, 2.0, 0, 0, 0, 0])  # inputs only in steps 0 and 1
    c = torch.cumsum(I, 0)
    v = torch.cumsum(c + b, 0)  # 3, 8, 13, 18, 23, 28
    s = torch.zeros(T)
    s[int((v >= theta).nonzero()[0])] = 1  # fires at step 2 with delta 3, S 5
    tr = dict(u=v.view(T, 1, 1), slope=(c + b).view(T, 1, 1), theta=torch.tensor([theta]),
              spikes=s.view(T, 1, 1))
    area = float(((v - theta) * (torch.arange(T) >= 2)).sum())  # 3 + 8 + 13 + 18
    assert float(mssr_terms(tr["u"], tr["slope"], tr["theta"], tr["spikes"])) == area == 42.0
    assert float(fssr_terms(tr["u"], tr["slope"], tr["theta"], tr["spikes"])) == float(v[-1] - theta)


def test_config_validation():
    with pytest.raises(ValueError):
        SSRConfig("l2")
    with pytest.raises(ValueError):
        SSRConfig("mssr", -1.0)
    assert not SSRConfig("mssr", 0.0).active and SSRConfig("fssr", 0.1).active
    assert SSRConfig.from_dict({"method": "mem", "gamma": 0.5, "v_hat": 0.75}).v_hat == 0.75


def test_reference_ramp_layer_exact_times_against_a_time_grid():
    """The continuous-time reference (training/reference_ttfs.py): exact first firing times."""
    from bsnn.training.reference_ttfs import ramp_layer
    g = torch.Generator().manual_seed(1)
    t = torch.rand(3, 12, generator=g) * 2
    t[0, 3] = float("inf")
    w = torch.randn(12, 5, generator=g) * 0.8 + 0.3
    t_out, S = ramp_layer(t, w, 1.0, 4.0)
    grid = torch.linspace(0, 4, 40001, dtype=torch.float64)
    for b in range(3):
        fin = torch.isfinite(t[b])
        v = (w[fin].double().T[:, None, :] * (grid[None, :, None] - t[b, fin].double()).clamp(min=0)).sum(-1)
        for i in range(5):
            idx = (v[i] >= 1.0).nonzero()
            ref = float(grid[idx[0, 0]]) if len(idx) else float("inf")
            assert abs(float(t_out[b, i]) - ref) <= 2e-4 or (ref == float("inf") == float(t_out[b, i]))
            if torch.isfinite(t_out[b, i]):  # the slope is the sum of the causal weights
                assert float(S[b, i]) == pytest.approx(float(w[t[b] < t_out[b, i], i].sum()), abs=1e-5)


def test_reference_continuous_regularizers_hand_computed():
    from bsnn.training.reference_ttfs import ssr_continuous
    times = [torch.tensor([[1.0, float("inf")]]), torch.tensor([[2.0]])]
    slopes = [torch.tensor([[0.5, 0.0]]), torch.tensor([[1.0]])]
    # one fired hidden neuron: S 0.5, t_max - t = 3; divided by the 2 hidden neurons
    assert float(ssr_continuous(times, slopes, 4.0, "mssr")) == pytest.approx(0.5 * 9 / 2 / 2)
    assert float(ssr_continuous(times, slopes, 4.0, "fssr")) == pytest.approx(0.5 * 3 / 2)
