"""Convolutional bundles through NIR (docs/nir.md, "Convolutional networks"): Conv2d, OR pooling
as SumPool2d + Threshold, Flatten; exact round trips, exact foreign mappings, one-line refusals."""
import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.golden import run_golden
from bsnn.nir_interop import NIRImportError, export_nir, import_nir, read_nir, simulate_nir, write_nir


def _inputs(bundle, batch, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (bundle.time_steps, batch, bundle.input_size)
    return (torch.rand(shape, generator=g) < 0.35).to(torch.int64), \
        (torch.rand(shape, generator=g) < 0.15).to(torch.int64)


def _same_results(a, b):
    assert torch.equal(a.prediction, b.prediction)
    assert torch.equal(a.count, b.count) and torch.equal(a.first, b.first)
    for x, y in zip(a.spikes + a.v + a.c, b.spikes + b.v + b.c):
        assert torch.equal(x, y)


def _geometry_bundle(seed=0, polarity="xnor", **modes):
    """Odd shapes, stride 2, padding, 1 x 1 and non-square kernels, OR pooling, two dense layers."""
    shape = (2, 9, 7)
    layers = [LayerSpec.conv2d(shape, 3, (3, 2), stride=(2, 1), padding=(1, 1), **modes)]
    shape = (3, 5, 8)
    layers.append(LayerSpec.pool2d(shape, (2, 3), stride=(2, 2), padding=(1, 0)))
    shape = (3, 3, 3)
    layers.append(LayerSpec.conv2d(shape, 5, 1, **modes))
    layers += [LayerSpec(7, **modes), LayerSpec(4, **modes)]
    return random_bundle(np.random.default_rng(seed), layers=layers, input_shape=(2, 9, 7),
                         input_polarity=polarity, v_width=12)


def test_the_graph_has_nir_conv_pool_and_flatten_nodes():
    bundle = _geometry_bundle(reset="zero")
    graph = export_nir(bundle)
    types = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert types == {"input": "Input", "conv1": "Conv2d", "lif1": "IF", "pool2": "SumPool2d", "or2": "Threshold",
                     "conv3": "Conv2d", "lif3": "IF", "flat4": "Flatten", "fc4": "Affine", "lif4": "IF",
                     "fc5": "Affine", "lif5": "IF", "output": "Output"}
    conv = graph.nodes["conv1"]
    assert np.array_equal(conv.weight, bundle.weights[0] * 2.0 - 1)          # [C_out, C_in, K_h, K_w]
    assert tuple(conv.stride) == (2, 1) and tuple(conv.padding) == (1, 1) and conv.groups == 1
    assert list(conv.output_type["output"]) == [3, 5, 8]
    lif1 = graph.nodes["lif1"]
    assert lif1.v_threshold.shape == (3, 5, 8)                                # per channel, spread
    assert np.array_equal(lif1.v_threshold[:, 2, 3], bundle.threshold[0] - 0.5)
    assert np.array_equal(conv.bias, bundle.bias[0])
    assert list(graph.nodes["pool2"].kernel_size) == [2, 3] and np.all(graph.nodes["or2"].threshold == 0.5)
    assert list(graph.nodes["flat4"].output_type["output"]) == [45]
    assert graph.nodes["fc4"].weight.shape == (7, 45)
    assert list(graph.nodes["input"].input_type["input"]) == [2, 9, 7]


@pytest.mark.parametrize("polarity", ["xnor", "channels"])
def test_geometry_round_trips_through_a_file(tmp_path, polarity):
    bundle = _geometry_bundle(1, polarity, current=True, leak_v=2, leak_c=1, reset="subtract")
    path = write_nir(bundle, tmp_path / "m.nir")
    with pytest.raises(ValueError, match="type mismatch"):     # NIR 1.0.8's kernel-height bug
        nir.read(path)
    back = import_nir(path)
    assert bundle.same_as(back) and back.metadata == bundle.metadata
    assert back.input_polarity == polarity
    on, off = _inputs(bundle, 8, 2)
    _same_results(run_golden(bundle, on, off), run_golden(back, on, off))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_conv_bundles_round_trip_through_a_nir_file_bit_exactly(tmp_path, seed):
    bundle = random_bundle(np.random.default_rng(seed), spatial=True)
    back = import_nir(write_nir(bundle, tmp_path / "model.nir"))
    assert bundle.same_as(back) and back.metadata == bundle.metadata
    on, off = _inputs(bundle, 4, seed % 1000)
    _same_results(run_golden(bundle, on, off), run_golden(back, on, off))


@pytest.mark.parametrize("seed", range(12))
def test_the_foreign_path_recompiles_a_conv_export_to_the_same_bundle(tmp_path, seed):
    # The NIR fields alone (Conv2d, neuron nodes with per-channel parameters spread over the map,
    # SumPool2d + Threshold 0.5) give back the same integer network.
    bundle = random_bundle(np.random.default_rng(2000 + seed), spatial=True)
    path = write_nir(bundle, tmp_path / "m.nir", dt=(1e-3, 3.7e-3, 1e-4)[seed % 3])
    again = import_nir(path, use_metadata=False, v_width=bundle.v_width, c_width=bundle.c_width,
                       bias_width=bundle.bias_width, max_input_events=bundle.max_input_events,
                       input_polarity=bundle.input_polarity)
    expected = dataclasses.replace(bundle, layers=[
        layer if not layer.has_neurons or layer.current else dataclasses.replace(layer, leak_c=0)
        for layer in bundle.layers])
    assert expected.same_as(again)


@pytest.mark.parametrize("seed", range(8))
def test_float_reference_equals_golden_for_integrate_and_fire_conv_layers(seed):
    rng = np.random.default_rng(seed)
    layers = [dataclasses.replace(layer, current=False, leak_v=0, leak_c=0,
                                  reset=str(rng.choice(["zero", "none"])), fire_once=bool(rng.random() < 0.2))
              if layer.has_neurons else layer
              for layer in random_bundle(np.random.default_rng(seed), spatial=True).layers]
    base = random_bundle(np.random.default_rng(seed), spatial=True)
    bundle = random_bundle(np.random.default_rng(seed), spatial=True, layers=layers,
                           input_shape=base.input_shape, input_polarity=base.input_polarity,
                           v_width=20, bias_width=6)
    on, off = _inputs(bundle, 8, seed)
    golden = run_golden(bundle, on, off)
    ref = simulate_nir(export_nir(bundle), on, off, readout=bundle.readout,
                       input_polarity=bundle.input_polarity)
    assert any(s.any() for s in golden.spikes)
    for a, b in zip(golden.spikes, ref.spikes):
        assert torch.equal(a.double(), b)
    assert torch.equal(golden.prediction, ref.prediction)


def test_edited_conv_graphs_are_refused_naming_the_node():
    bundle = _geometry_bundle(3)
    graph = export_nir(bundle)
    graph.nodes["conv3"].weight = -graph.nodes["conv3"].weight
    with pytest.raises(NIRImportError, match=r"^node 'conv3': weights disagree with the bsnn metadata"):
        import_nir(graph)
    graph = export_nir(bundle)
    graph.nodes["or2"].threshold = graph.nodes["or2"].threshold + 0.25
    with pytest.raises(NIRImportError, match=r"^node 'or2': threshold disagree with the bsnn metadata"):
        import_nir(graph)
    graph = export_nir(bundle)
    graph.nodes["conv1"].bias = graph.nodes["conv1"].bias + 1
    with pytest.raises(NIRImportError, match=r"^node 'conv1': bias disagree with the bsnn metadata"):
        import_nir(graph)


# --- foreign graphs: exact mappings ----------------------------------------------------------------

def _lif(shape, thr=0.5):
    return nir.IF(r=np.full(shape, 1e4), v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def _graph(*named, in_shape=(1, 6, 6)):
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    nodes.update(dict(named))
    keys = list(nodes)
    nodes["output"] = nir.Output(output_type={"output": np.array([1])})
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys, keys[1:] + ["output"])), type_check=False)


def _conv(c_out=2, c_in=1, k=3, scale=1.0, seed=0, **kw):
    rng = np.random.default_rng(seed)
    w = np.where(rng.random((c_out, c_in, k, k)) < 0.5, -scale, scale)
    args = dict(input_shape=None, weight=w, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(c_out))
    args.update(kw)
    return nir.Conv2d(**args)


def test_avgpool_and_sumpool_with_an_or_threshold_are_or_pooling():
    for pool, thr in ((nir.SumPool2d, 0.0), (nir.SumPool2d, 0.99), (nir.AvgPool2d, 0.2)):
        graph = _graph(("c", _conv()), ("n", _lif((2, 4, 4))),
                       ("p", pool(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
                       ("t", nir.Threshold(threshold=np.full((2, 2, 2), thr))), ("f", nir.Flatten({"input": None}, 0)),
                       ("fc", nir.Linear(weight=np.ones((3, 8)))), ("m", _lif(3)))
        bundle = import_nir(graph, time_steps=2)
        assert [layer.kind for layer in bundle.layers] == ["conv2d", "pool2d", "dense"]
        assert bundle.layers[1].kernel == (2, 2)


def test_a_pool_of_one_channel_into_neurons_is_a_conv2d_of_equal_weights():
    graph = _graph(("c", _conv(c_out=1)), ("n", _lif((1, 4, 4))),
                   ("p", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))),
                   ("m", _lif((1, 3, 3), thr=0.6)))
    bundle = import_nir(graph, time_steps=2)
    assert [layer.kind for layer in bundle.layers] == ["conv2d", "conv2d"]
    assert bundle.weights[1].tolist() == [[[[1, 1], [1, 1]]]]
    assert bundle.threshold[1].tolist() == [3]              # 0.6 / (1/4) = 2.4: v > 2.4 <=> v >= 3


def test_an_average_pool_before_a_dense_layer_is_folded_into_its_weights():
    rng = np.random.default_rng(5)
    fc = rng.choice([-0.5, 0.5], size=(3, 2 * 2 * 2))
    graph = _graph(("c", _conv()), ("n", _lif((2, 4, 4))),
                   ("p", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
                   ("f", nir.Flatten({"input": None}, 0)), ("fc", nir.Linear(weight=fc)), ("m", _lif(3, thr=0.3)))
    bundle = import_nir(graph, time_steps=3)
    assert [layer.kind for layer in bundle.layers] == ["conv2d", "dense"]
    w = bundle.weights[1].T.reshape(3, 2, 4, 4)              # reads the 2 x 4 x 4 spike map itself
    assert np.array_equal(w[:, :, ::2, ::2], (fc.reshape(3, 2, 2, 2) > 0).astype(np.uint8))
    assert np.array_equal(w[:, :, 1::2, 1::2], w[:, :, ::2, ::2])
    assert bundle.threshold[1].tolist() == [3, 3, 3]         # 0.3 / (0.5 / 4) = 2.4
    on = (torch.rand(3, 16, 36, generator=torch.Generator().manual_seed(0)) < 0.5).to(torch.int64)
    golden, ref = run_golden(bundle, on), simulate_nir(graph, on)
    for a, b in zip(golden.spikes, ref.spikes):
        assert torch.equal(a.double(), b)
    assert golden.spikes[1].any()


def test_padding_same_and_valid_and_input_without_channel_axis():
    graph = _graph(("c", _conv(k=3, padding="same")), ("n", _lif((2, 6, 6))), in_shape=(6, 6))
    bundle = import_nir(graph, time_steps=2)
    assert bundle.input_shape == (1, 6, 6) and bundle.layers[0].padding == (1, 1)
    graph = _graph(("c", _conv(k=3, padding="valid")), ("n", _lif((2, 4, 4))))
    assert import_nir(graph, time_steps=2).layers[0].padding == (0, 0)


def test_two_channel_event_frames_map_to_the_channels_polarity_rule():
    graph = _graph(("c", _conv(c_in=2)), ("n", _lif((2, 4, 4))), in_shape=(2, 6, 6))
    bundle = import_nir(graph, time_steps=2, input_polarity="channels")
    assert bundle.input_size == 36 and bundle.input_polarity == "channels" and bundle.input_shape == (2, 6, 6)
    assert import_nir(graph, time_steps=2).input_size == 72           # xnor: 72 signed inputs
    with pytest.raises(NIRImportError, match=r"^input_polarity: channels needs an input of two channels"):
        import_nir(_graph(("c", _conv()), ("n", _lif((2, 4, 4)))), time_steps=2, input_polarity="channels")


# --- foreign graphs: refusals (one line, naming the node) ------------------------------------------

def _refused(graph, pattern, name):
    with pytest.raises(NIRImportError, match=pattern) as info:
        import_nir(graph, time_steps=2)
    msg = str(info.value)
    assert "\n" not in msg and f"'{name}'" in msg, msg


POOL = dict(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))


@pytest.mark.parametrize("nodes, pattern, name", [
    ([("c", _conv(groups=2, c_in=1)), ("n", _lif((2, 4, 4)))], r"groups = 2", "c"),
    ([("c", _conv(dilation=2)), ("n", _lif((2, 2, 2)))], r"dilation \[2, 2\] is not supported", "c"),
    ([("c", _conv(stride=4)), ("n", _lif((2, 1, 1)))], r"stride 4 along the height must be in 1 .. kernel 3", "c"),
    ([("c", _conv(k=2, padding="same")), ("n", _lif((2, 6, 6)))], r"padding 'same' .* not symmetric", "c"),
    ([("c", _conv(c_in=3)), ("n", _lif((2, 4, 4)))], r"weight has 3 input channels, the map before has 1", "c"),
    ([("c", _conv(input_shape=(5, 5))), ("n", _lif((2, 4, 4)))], r"input_shape \[5, 5\] differs", "c"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("p", nir.SumPool2d(**POOL)),
      ("t", nir.Threshold(threshold=np.full((2, 2, 2), 1.0)))],
     r"threshold 1 after SumPool2d 'p' is not OR pooling", "t"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("p", nir.AvgPool2d(**POOL)),
      ("t", nir.Threshold(threshold=np.full((2, 2, 2), 0.5)))],
     r"threshold 0.5 after AvgPool2d 'p' is not OR pooling \(needs 0 <= threshold < 1/4", "t"),
    ([("p", nir.SumPool2d(**POOL)), ("t", nir.Threshold(threshold=np.full((1, 3, 3), 0.5)))],
     r"SumPool2d of the input is not supported", "p"),
    ([("c", _conv()), ("p", nir.AvgPool2d(**POOL)), ("n", _lif((2, 2, 2)))],
     r"follows synapse node 'c' with no neuron between", "p"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("p", nir.SumPool2d(**POOL)), ("n2", _lif((2, 2, 2)))],
     r"per-channel \(depthwise\) sum is not a conv2d layer", "n2"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("p", nir.SumPool2d(**POOL)), ("c2", _conv(c_in=2, k=1))],
     r"Conv2d reads the sums of SumPool2d 'p'", "c2"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))),
      ("p", nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]), padding=np.array([0, 0]))),
      ("f", nir.Flatten({"input": None}, 0)), ("fc", nir.Linear(weight=np.ones((3, 8)))), ("m", _lif(3))],
     r"whose windows do not tile the map", "fc"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("t", nir.Threshold(threshold=np.full((2, 4, 4), 0.5)))],
     r"Threshold is not supported by the core except after SumPool2d or AvgPool2d", "t"),
    ([("c", _conv()), ("n", nir.IF(r=np.full((2, 4, 4), 1e4), v_threshold=np.arange(32.0).reshape(2, 4, 4),
                                   v_reset=np.zeros((2, 4, 4))))],
     r"v_threshold / input gain differs between the positions of output channel 0 .* one per output channel", "n"),
    ([("c", _conv()), ("n", _lif((2, 4, 4))), ("fc", nir.Linear(weight=np.ones((3, 32)))), ("m", _lif(3))],
     r"Linear reads a value of shape \[2, 4, 4\]; a dense layer reads a 1-D vector", "fc"),
    ([("f", nir.Flatten({"input": None}, 0)), ("fc", nir.Linear(weight=np.ones((3, 36)))), ("m", _lif(3)),
      ("c", _conv(c_in=1, k=1)), ("n", _lif((2, 1, 3)))], r"Conv2d reads a value of shape \[3\]", "c"),
], ids=["groups", "dilation", "stride-beyond-kernel", "same-even-kernel", "channels", "input_shape",
        "sum-threshold", "avg-threshold", "pool-of-input", "pool-of-currents", "depthwise-sum",
        "pool-into-conv", "avg-not-tiling", "threshold-after-neuron", "per-position-threshold",
        "dense-reads-map", "conv-after-dense"])
def test_what_the_core_cannot_run_exactly_is_refused(nodes, pattern, name):
    _refused(_graph(*nodes), pattern, name)


def test_non_square_kernels_are_read_although_nir_own_type_check_refuses_them(tmp_path):
    bundle = _geometry_bundle(4)
    path = write_nir(bundle, tmp_path / "m.nir")
    assert read_nir(path).nodes["conv1"].weight.shape == (3, 2, 3, 2)


def test_the_demo_takes_a_random_conv_bundle_through_nir(tmp_path):
    import json

    from bsnn.nir_demo import main
    assert main(["--random-conv", "11", "--out", str(tmp_path), "--test-limit", "16", "--time-steps", "4"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())["bundle"]
    assert [layer["kind"] for layer in report["layers"]] == ["conv2d", "pool2d", "dense"]
    nodes = report["nir_nodes"]
    assert nodes[:2] == ["Input", "Conv2d"] and nodes[3:7] == ["SumPool2d", "Threshold", "Flatten", "Affine"]
    assert report["round_trip_same_bundle"] and report["round_trip_golden_spikes_identical"]
    assert report["foreign_recompile_same_network"] and report["samples"] == 16


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_foreign_conv_chains_compile_to_valid_bundles_or_refuse_cleanly(seed):
    # Random chains of conv, pool, threshold, flatten and dense nodes with random geometry,
    # parameter shapes and values (many of them wrong): a valid bundle or a one-line NIRImportError.
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    named, cur, flat = [], shape, False
    for i in range(int(rng.integers(1, 6))):
        r = rng.random() * (0.35 if i == 0 else 1.0)
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        odd = rng.random() < 0.1             # mostly windows within section 10.1, some outside
        s = int(rng.integers(1, 4)) if odd else int(rng.integers(1, min(k) + 1))
        p = int(rng.integers(0, 3)) if odd else int(rng.integers(0, min(k)))
        out = (max(1, (cur[1] + 2 * p - k[0]) // s + 1), max(1, (cur[2] + 2 * p - k[1]) // s + 1)) if not flat else (1, 1)
        if r < 0.35 and not flat:
            c = int(rng.integers(1, 4))
            w = rng.normal(0, 1, (c, cur[0] if rng.random() < 0.9 else cur[0] + 1, *k))
            named.append((f"c{i}", nir.Conv2d(input_shape=None, weight=w, stride=s, padding=p,
                                              dilation=1 if rng.random() < 0.95 else 2,
                                              groups=1 if rng.random() < 0.95 else 2, bias=rng.normal(0, 1, c))))
            cur = (c, *out)
            pshape = [cur, (cur[0],), (1,)][int(rng.integers(0, 3))]
            thr = rng.uniform(0.1, 3, pshape)            # per position: mostly refused
            if len(pshape) == 3 and rng.random() < 0.8:  # one value per channel, spread
                thr = np.broadcast_to(rng.uniform(0.1, 3, (cur[0], 1, 1)), cur).copy()
            named.append((f"n{i}", nir.LIF(tau=np.full(pshape, 1e-3), r=np.full(pshape, 10.0),
                                           v_leak=np.zeros(pshape), v_threshold=thr, v_reset=np.zeros(pshape))))
        elif r < 0.6 and not flat:
            pool = (nir.SumPool2d, nir.AvgPool2d)[int(rng.integers(0, 2))]
            named.append((f"p{i}", pool(kernel_size=np.array(k), stride=np.array([s, s]), padding=np.array([p, p]))))
            cur = (cur[0], *out)
            if rng.random() < 0.8:
                named.append((f"t{i}", nir.Threshold(threshold=np.full(cur, rng.choice([0.5, 0.1, 0.99, 1.0, -0.1])))))
        elif r < 0.75 and not flat:
            named.append((f"f{i}", nir.Flatten({"input": None}, int(rng.integers(0, 2)))))
            flat, cur = True, (int(np.prod(cur)),)
        else:
            if not flat and rng.random() < 0.8:
                named.append((f"g{i}", nir.Flatten({"input": None}, 0)))
                flat, cur = True, (int(np.prod(cur)),)
            n = int(rng.integers(1, 6))
            n_in = int(np.prod(cur)) if rng.random() < 0.95 else 3
            named.append((f"a{i}", nir.Affine(weight=rng.normal(0, 1, (n, n_in)), bias=rng.normal(0, 1, n))))
            named.append((f"n{i}", nir.IF(r=np.full(n, 1e4), v_threshold=rng.uniform(0.1, 3, n), v_reset=np.zeros(n))))
            flat, cur = True, (n,)
    try:
        bundle = import_nir(_graph(*named, in_shape=shape), time_steps=2)
    except NIRImportError as exc:
        assert "\n" not in str(exc)
        return
    bundle.validate()
    on = (torch.rand(2, 3, bundle.input_size, generator=torch.Generator().manual_seed(seed % 997)) < 0.5)
    run_golden(bundle, on.to(torch.int64))
