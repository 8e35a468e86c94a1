"""Compiling foreign NIR graphs: the parameter mapping, calibration, and refusal of what the core lacks."""
import nir
import numpy as np
import pytest
import torch

from bsnn.firmware_export.golden import run_golden
from bsnn.nir_interop import NIRImportError, import_nir, simulate_nir
from bsnn.nir_interop.importer import leak_shift


def lif(n, tau=1e-3, thr=1.0, r=None, v_leak=0.0, v_reset=0.0, **kw):
    tau = np.full(n, tau)
    return nir.LIF(tau=tau, r=tau / 1e-4 if r is None else np.full(n, r), v_leak=np.full(n, v_leak),
                   v_threshold=np.full(n, thr), v_reset=np.full(n, v_reset), **kw)


def chain(*nodes, edges=None):
    """Input -> nodes... -> Output, named n0, n1, ...; extra ``edges`` appended."""
    first, last = nodes[0], nodes[-1]
    n_in = first.weight.shape[1] if hasattr(first, "weight") else int(np.prod(first.input_type["input"]))
    n_out = int(np.prod(last.output_type["output"]))
    names = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    names.update({f"n{i}": node for i, node in enumerate(nodes)})
    names["output"] = nir.Output(output_type={"output": np.array([n_out])})
    keys = list(names)
    all_edges = [(a, b) for a, b in zip(keys, keys[1:])] + list(edges or [])
    return nir.NIRGraph(nodes=names, edges=all_edges, type_check=False)


def affine(n_out, n_in, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    return nir.Affine(weight=rng.normal(0, scale, (n_out, n_in)), bias=rng.normal(0, 0.1, n_out))


# --- the mapping ---------------------------------------------------------------------------------

def test_leak_shift_picks_the_nearest_power_of_two_factor():
    assert leak_shift(np.array([0.9]), 16)[0] == 3                       # 0.875 beats 0.9375
    assert leak_shift(np.array([0.95]), 16)[0] == 4
    assert leak_shift(np.array([1.0]), 16) == (0, 0.0)                  # no leak
    assert leak_shift(np.array([0.5, 0.5]), 16) == (1, 0.0)
    assert leak_shift(np.array([0.999]), 4)[0] == 0                     # 1 - 2^-3 is further than 1


def test_lif_parameters_become_shift_threshold_and_bias():
    w = np.array([[0.5, -0.25, 0.25, -1.0], [0.1, 0.1, -0.1, 0.1]])
    b = np.array([0.3, -0.05])
    # dt/tau = 0.125 (Euler beta 0.875 -> k = 3), r * dt/tau = 2 (input gain), threshold 3.
    node = nir.LIF(tau=np.full(2, 8e-4), r=np.full(2, 16.0), v_leak=np.zeros(2),
                   v_threshold=np.full(2, 3.0), v_reset=np.zeros(2))
    bundle = import_nir(chain(nir.Affine(weight=w, bias=b), node), time_steps=4)
    s = np.abs(w).mean(axis=1)                                          # 0.5, 0.1
    assert bundle.layers[0].leak_v == 3 and bundle.layers[0].reset == "zero"
    assert bundle.weights[0].T.tolist() == (w >= 0).astype(int).tolist()
    assert bundle.threshold[0].tolist() == (np.floor(3.0 / (2 * s)) + 1).astype(int).tolist()  # [4, 16]
    assert bundle.bias[0].tolist() == np.round(b / s).astype(int).tolist()                  # [1, 0]
    report = bundle.metadata["nir_import"]["layers"][0]
    assert report["beta_quantized"] == 0.875 and report["beta_abs_error_max"] < 1e-12
    assert bundle.metadata["nir_import"]["dt"] == 1e-4


def test_exp_discretization_uses_exp_of_dt_over_tau():
    node = lif(3, tau=1e-4 / 0.2)                                       # dt/tau = 0.2
    euler = import_nir(chain(affine(3, 5), node), time_steps=2)
    exact = import_nir(chain(affine(3, 5), node), time_steps=2, discretization="exp")
    assert euler.layers[0].leak_v == 2                                  # 0.8 -> 0.75
    assert exact.layers[0].leak_v == 3                                  # exp(-0.2) = 0.819 -> 0.875
    assert import_nir(chain(affine(3, 5), lif(3, tau=1e-4 / 0.05)), time_steps=2,
                      discretization="exp").layers[0].leak_v == 4       # exp(-0.05) = 0.951 -> 0.9375


def test_cuba_lif_bias_goes_in_at_its_steady_state():
    n = 2
    node = nir.CubaLIF(tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 4e-4), r=np.full(n, 4.0),
                       v_leak=np.zeros(n), v_threshold=np.full(n, 2.0), w_in=np.full(n, 2.0))
    w = np.array([[1.0, -1.0], [0.5, 0.5]])
    b = np.array([0.5, -0.25])
    bundle = import_nir(chain(nir.Affine(weight=w, bias=b), node), time_steps=3)
    layer = bundle.layers[0]
    assert (layer.current, layer.leak_c, layer.leak_v) == (True, 1, 2)  # alpha 0.5, beta 0.75
    s = np.abs(w).mean(axis=1)
    # gain = (dt/tau_syn) w_in (dt/tau_mem) r = 1; the bias reaches b / (1 - alpha) in the current
    assert bundle.bias[0].tolist() == np.round(b / s / 0.5).astype(int).tolist()
    assert bundle.threshold[0].tolist() == (np.floor(2.0 / s) + 1).astype(int).tolist()


def test_if_node_and_v_leak_drive():
    node = nir.IF(r=np.full(2, 1e4), v_threshold=np.array([2.5, 7.0]))   # dt * r = 1
    w = np.array([[1.0, -1.0, 1.0], [-2.0, 2.0, 2.0]])
    bundle = import_nir(chain(nir.Linear(weight=w), node), time_steps=5, readout="potential")
    assert bundle.layers[0].leak_v == 0 and bundle.readout == "potential"
    assert bundle.threshold[0].tolist() == [3, 4]                        # floor(2.5)+1, floor(3.5)+1
    leaky = lif(2, tau=2e-4, r=2.0, v_leak=4.0)                         # drive (dt/tau) v_leak = 2 per step
    bundle = import_nir(chain(nir.Linear(weight=w[:, :3]), leaky), time_steps=5)
    assert bundle.bias[0].tolist() == [2, 1]                            # 2 / (gain 1 * s), s = 1 and 2


def test_compiled_bundle_tracks_the_float_reference():
    # Binary weights with a per-neuron scale, beta exactly 1 - 2^-k, thresholds between integers:
    # only the floor of the shift leak separates the integer model from the float one.
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.2, 1.0, 24), rng.uniform(0.2, 1.0, 6)
    w1 = np.where(rng.random((24, 40)) < 0.5, -1.0, 1.0) * s1[:, None]
    w2 = np.where(rng.random((6, 24)) < 0.5, -1.0, 1.0) * s2[:, None]
    l1 = lif(24, tau=1e-4 * 16, thr=1.0)        # beta = 1 - 1/16
    l1.v_threshold = s1 * 3.5
    l2 = lif(6, tau=1e-4 * 16)
    l2.v_threshold = s2 * 2.5
    graph = chain(nir.Linear(weight=w1), l1, nir.Linear(weight=w2), l2)
    on = (torch.rand(12, 64, 40, generator=torch.Generator().manual_seed(1)) < 0.3).to(torch.int64)
    bundle = import_nir(graph, time_steps=12)
    assert bundle.threshold[0].tolist() == [4] * 24 and bundle.threshold[1].tolist() == [3] * 6
    ref, gold = simulate_nir(graph, on), run_golden(bundle, on)
    rate_ref, rate_int = float(ref.spikes[0].mean()), float(gold.spikes[0].double().mean())
    assert rate_ref > 0.05 and abs(rate_int - rate_ref) < 0.1 * rate_ref
    assert float((ref.prediction == gold.prediction).double().mean()) > 0.8


def test_calibration_scales_thresholds_to_match_float_spike_rates():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 1, (16, 30)) * rng.uniform(0.1, 2, (16, 1))     # far from binary
    graph = chain(nir.Linear(weight=w), lif(16, tau=1e-4 * 8, thr=2.0), affine(4, 16, 3), lif(4, tau=1e-3))
    on = (torch.rand(10, 128, 30, generator=torch.Generator().manual_seed(0)) < 0.4).to(torch.int64)
    plain = import_nir(graph, time_steps=10)
    calibrated = import_nir(graph, time_steps=10, calibration=on)
    info = calibrated.metadata["nir_import"]["calibration"]
    assert info["samples"] == 128 and len(info["layers"]) == 2
    target = float(simulate_nir(graph, on).spikes[0].mean())
    err_plain = abs(float(run_golden(plain, on).spikes[0].double().mean()) - target)
    err_cal = abs(float(run_golden(calibrated, on).spikes[0].double().mean()) - target)
    assert err_cal <= err_plain and info["layers"][0]["rate_float"] == pytest.approx(target)


def test_reset_choice_and_nonzero_v_reset():
    graph = chain(affine(3, 4), lif(3, v_reset=0.5))
    with pytest.raises(NIRImportError, match=r"^node 'n1': v_reset = 0.5 is not 0"):
        import_nir(graph, time_steps=2)
    assert import_nir(graph, time_steps=2, reset="subtract").layers[0].reset == "subtract"
    assert import_nir(graph, time_steps=2, reset={"n1": "none"}).layers[0].reset == "none"


def test_time_steps_is_required_for_foreign_graphs():
    with pytest.raises(NIRImportError, match="time_steps is required"):
        import_nir(chain(affine(3, 4), lif(3)))


# --- refusal -------------------------------------------------------------------------------------

def _one_line(exc_info, name):
    msg = str(exc_info.value)
    assert "\n" not in msg and f"'{name}'" in msg, msg


def test_conv_is_refused_naming_the_node():
    conv = nir.Conv1d(input_shape=8, weight=np.ones((2, 1, 3)), stride=1, padding=0, dilation=1,
                      groups=1, bias=np.zeros(2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 8])}),
                                "my_conv": conv, "output": nir.Output(output_type={"output": np.array([2, 6])})},
                         edges=[("input", "my_conv"), ("my_conv", "output")], type_check=False)
    with pytest.raises(NIRImportError, match=r"node 'my_conv': Conv1d is not supported") as info:
        import_nir(graph, time_steps=2)
    _one_line(info, "my_conv")


@pytest.mark.parametrize("node, kind", [
    (nir.Delay(delay=np.ones(3)), "Delay"),
    (nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)), "LI"),
    (nir.Scale(scale=np.ones(3)), "Scale"),
    (nir.Threshold(threshold=np.ones(3)), "Threshold"),
])
def test_other_unsupported_nodes_are_refused_naming_the_node(node, kind):
    graph = chain(affine(3, 4), lif(3), node)
    with pytest.raises(NIRImportError, match=rf"^node 'n2': {kind} is not supported") as info:
        import_nir(graph, time_steps=2)
    _one_line(info, "n2")


def test_flatten_to_1d_is_the_flat_order_and_anything_else_is_refused():
    # A map flattened to 1-D is read in the flat order c*H*W + y*W + x (docs/semantics.md 10.1):
    # the dense layer reads the input units as they are numbered.
    def graph_of(in_shape, flat, fc_in):
        nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), "flat": flat,
                 "fc": affine(4, fc_in), "lif": lif(4), "output": nir.Output(output_type={"output": np.array([4])})}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
                            type_check=False)
    full = graph_of([2, 3], nir.Flatten(input_type={"input": np.array([2, 3])}, start_dim=0), 6)
    bundle = import_nir(full, time_steps=2)
    assert bundle.input_size == 6 and bundle.input_shape is None and bundle.layers[0].kind == "dense"
    partial = graph_of([2, 3, 4], nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1), 12)
    with pytest.raises(NIRImportError, match=r"^node 'flat': Flatten of shape \[2, 3, 4\] \(start_dim 1") as info:
        import_nir(partial, time_steps=2)
    _one_line(info, "flat")
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 3])}), "fc": affine(4, 6), "lif": lif(4),
             "output": nir.Output(output_type={"output": np.array([4])})}
    unflattened = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
                               type_check=False)
    with pytest.raises(NIRImportError, match=r"^node 'fc': Affine reads a value of shape \[2, 3\]; a dense"):
        import_nir(unflattened, time_steps=2)


def test_recurrent_edge_is_refused_naming_the_node():
    graph = chain(affine(3, 4), lif(3), edges=[("n1", "n0")])
    with pytest.raises(NIRImportError, match="recurrent") as info:
        import_nir(graph, time_steps=2)
    _one_line(info, "n0")
    with pytest.raises(NIRImportError, match=r"^node 'n1': recurrent edge to itself"):
        import_nir(chain(affine(3, 4), lif(3), edges=[("n1", "n1")]), time_steps=2)


def test_nested_graph_is_refused_naming_the_node():
    inner = chain(affine(3, 3), lif(3))
    graph = chain(affine(3, 4), lif(3))
    graph.nodes["rec"] = inner
    graph.edges = [("input", "n0"), ("n0", "rec"), ("rec", "output")]
    del graph.nodes["n1"]
    with pytest.raises(NIRImportError, match=r"^node 'rec': nested NIRGraph") as info:
        import_nir(graph, time_steps=2)
    _one_line(info, "rec")


def test_malformed_chains_are_refused_naming_the_node():
    with pytest.raises(NIRImportError, match=r"^node 'n1': follows synapse node 'n0'"):
        import_nir(chain(affine(3, 4), affine(2, 3), lif(2)), time_steps=2)
    with pytest.raises(NIRImportError, match=r"^node 'n0': LIF must follow an Affine, Linear or Conv2d node"):
        g = chain(lif(4), affine(3, 4), lif(3))
        import_nir(g, time_steps=2)
    with pytest.raises(NIRImportError, match=r"^node 'n2': not followed by a spiking neuron"):
        import_nir(chain(affine(3, 4), lif(3), affine(2, 3)), time_steps=2)
    with pytest.raises(NIRImportError, match=r"^node 'n2': weight has 4 inputs, the layer before has 3"):
        import_nir(chain(affine(3, 4), lif(3), affine(2, 4), lif(2)), time_steps=2)
    with pytest.raises(NIRImportError, match=r"^node 'n1': dt/tau = 2 > 1"):
        import_nir(chain(affine(3, 4), lif(3, tau=5e-5)), time_steps=2)


# --- robustness ----------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), v_width=st.integers(2, 32), c_width=st.integers(2, 32),
       discretization=st.sampled_from(["euler", "exp"]))
def test_random_foreign_chains_compile_to_valid_bundles_or_refuse_cleanly(seed, v_width, c_width,
                                                                          discretization):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 9)) for _ in range(int(rng.integers(2, 5)))]
    nodes = []
    for n_in, n in zip(sizes, sizes[1:]):
        w = rng.normal(0, 10 ** rng.uniform(-3, 2), (n, n_in)) * (rng.random((n, n_in)) < 0.9)
        if rng.random() < 0.5:
            nodes.append(nir.Affine(weight=w, bias=rng.normal(0, 10 ** rng.uniform(-3, 2), n)))
        else:
            nodes.append(nir.Linear(weight=w))
        tau = 1e-4 / rng.uniform(0.001, 1.2, n)
        thr = rng.normal(1, 2, n) * 10 ** rng.uniform(-2, 3)
        kind = rng.integers(0, 3)
        if kind == 0:
            nodes.append(nir.LIF(tau=tau, r=rng.uniform(0.1, 1e3, n), v_leak=rng.normal(0, 1, n),
                                 v_threshold=thr, v_reset=np.zeros(n)))
        elif kind == 1:
            nodes.append(nir.IF(r=rng.uniform(0.1, 1e5, n), v_threshold=thr))
        else:
            nodes.append(nir.CubaLIF(tau_syn=1e-4 / rng.uniform(0.001, 1.0, n), tau_mem=tau,
                                     r=rng.uniform(0.1, 1e3, n), v_leak=rng.normal(0, 1, n),
                                     v_threshold=thr, w_in=rng.uniform(0.1, 10, n)))
    try:
        bundle = import_nir(chain(*nodes), time_steps=3, v_width=v_width, c_width=c_width,
                            discretization=discretization)
    except NIRImportError as exc:
        assert "\n" not in str(exc)
        return
    bundle.validate()
    on = (torch.rand(3, 4, sizes[0], generator=torch.Generator().manual_seed(seed % 997)) < 0.5)
    run_golden(bundle, on.to(torch.int64))
