"""A convolutional snnTorch network -> NIR (snnTorch's exporter) -> bundle -> golden model (and RTL).

The network: Conv2d(1, 4, 3) -> Leaky -> pool 2x2 -> Flatten -> Linear(36, 5) -> Leaky, on 8 x 8
input spikes. Weights are binary with a scale per output unit (+-c, what binarisation-aware
training exports), thresholds and biases are multiples of that scale, and the neurons do not leak
(beta = 1 - 1e-6: snnTorch cannot export beta = 1, tau would be infinite), so the snnTorch float
network and the compiled integer bundle have the same semantics and must spike identically.

* ``AvgPool2d``: snnTorch 1.0's exporter writes it; the importer folds the average of the
  2 x 2 windows (which tile the 6 x 6 map) into the weights of the dense layer after it, exactly.
* ``MaxPool2d`` (OR pooling of spikes): snnTorch 1.0's exporter does not support it (it prints
  "module not implemented" and then fails); the graph is snnTorch's export of the same network
  with the pool node replaced by what max pooling of 0/1 spikes is in NIR, ``SumPool2d`` followed
  by ``Threshold`` at 0.5 (docs/semantics.md section 10.4).
"""
import os

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import load_bundle, save_bundle
from bsnn.firmware_export.golden import run_golden
from bsnn.nir_interop import import_nir, read_nir, simulate_nir

try:
    import nir
    import snntorch as snn
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir
except Exception as exc:  # ImportError, or nirtorch missing/incompatible
    if os.environ.get("CI"):
        raise
    pytest.skip(f"snntorch (with nirtorch) is not importable ({type(exc).__name__}: {exc}); "
                f"install the test extra: pip install snntorch nirtorch", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")

H = W = 8
C, K, N_OUT, T, B = 4, 3, 5, 8, 32
CONV_SCALE = torch.tensor([0.5, 1.0, 0.25, 2.0])    # c per output channel (powers of two: exact floats)
CONV_THETA = torch.tensor([2, 3, 2, 4])             # the integer thresholds the bundle must get
CONV_BIAS = torch.tensor([0, 1, -1, 0])
FC_SCALE = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.25])
FC_THETA = torch.tensor([3, 2, 4, 2, 3])
FC_BIAS = torch.tensor([0, 0, 1, -1, 0])
BETA = 1 - 1e-6


def _leaky(shape, output=False):
    return snn.Leaky(beta=torch.full(shape, BETA), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism="zero", output=output)


def _net(pool: str):
    torch.manual_seed(1)
    out_hw = H - K + 1
    pooled = out_hw // 2
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, C, K), _leaky((C, out_hw, out_hw)),
        torch.nn.AvgPool2d(2) if pool == "avg" else torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(C * pooled * pooled, N_OUT), _leaky((N_OUT,), output=True))
    # the pooled value a spike contributes: 1/4 through the average, 1 through the maximum
    unit = 0.25 if pool == "avg" else 1.0
    with torch.no_grad():
        conv, fc = net[0], net[4]
        conv.weight.copy_(torch.where(conv.weight >= 0, 1.0, -1.0) * CONV_SCALE.view(C, 1, 1, 1))
        conv.bias.copy_(CONV_BIAS * CONV_SCALE)
        net[1].threshold.copy_(((CONV_THETA - 0.5) * CONV_SCALE).view(C, 1, 1).expand(C, out_hw, out_hw))
        fc.weight.copy_(torch.where(fc.weight >= 0, 1.0, -1.0) * FC_SCALE.view(N_OUT, 1))
        fc.bias.copy_(FC_BIAS * FC_SCALE * unit)
        net[5].threshold.copy_((FC_THETA - 0.5) * FC_SCALE * unit)
    return net


def _inputs():
    g = torch.Generator().manual_seed(7)
    return (torch.rand(T, B, H * W, generator=g) < 0.3).to(torch.int64)


@torch.no_grad()
def _run_snntorch(net, on):
    """Hidden (conv) spikes [T, B, C*6*6] and output spikes [T, B, N_OUT], step by step."""
    snn_utils.reset(net)
    hidden, out = [], []
    for t in range(on.shape[0]):
        x = on[t].float().reshape(-1, 1, H, W)
        for i, module in enumerate(net):
            x = module(x)
            if i == 1:
                hidden.append(x.reshape(x.shape[0], -1))
        out.append(x[0])
    return torch.stack(hidden), torch.stack(out)


def _export(net, pool, path):
    if pool == "avg":
        graph = export_to_nir(net, torch.zeros(1, 1, H, W), ignore_dims=[0])
    else:
        # snnTorch's exporter has no MaxPool2d: export the same network with AvgPool2d, then put
        # OR pooling (SumPool2d, Threshold 0.5) where the AvgPool2d node is.
        twin = torch.nn.Sequential(*[torch.nn.AvgPool2d(2) if isinstance(m, torch.nn.MaxPool2d) else m
                                     for m in net])
        graph = export_to_nir(twin, torch.zeros(1, 1, H, W), ignore_dims=[0])
        name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.AvgPool2d))
        avg = graph.nodes[name]
        pair = lambda v: np.broadcast_to(np.asarray(v), (2,)).copy()  # noqa: E731 (snnTorch writes ints)
        graph.nodes[name] = nir.SumPool2d(kernel_size=pair(avg.kernel_size), stride=pair(avg.stride),
                                          padding=pair(avg.padding))
        graph.nodes[name + "_or"] = nir.Threshold(threshold=np.full(avg.output_type["output"], 0.5))
        graph.edges = [(name + "_or", b) if a == name else (a, b) for a, b in graph.edges] + \
            [(name, name + "_or")]
        graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, type_check=False)
    nir.write(path, graph)
    return read_nir(path)                      # from here on only the file is used


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_convolutional_snntorch_network_compiles_to_a_bundle_that_spikes_as_it_does(tmp_path, pool):
    net, on = _net(pool), _inputs()
    graph = _export(net, pool, tmp_path / "net.nir")
    kinds = [type(graph.nodes[a]).__name__ for a, _ in graph.edges]
    assert "Conv2d" in kinds and ("AvgPool2d" if pool == "avg" else "SumPool2d") in kinds
    bundle = import_nir(tmp_path / "net.nir", time_steps=T)
    expected_kinds = ["conv2d", "dense"] if pool == "avg" else ["conv2d", "pool2d", "dense"]
    assert [layer.kind for layer in bundle.layers] == expected_kinds
    assert bundle.input_shape == (1, H, W) and bundle.layers[0].leak_v == 0
    assert bundle.threshold[0].tolist() == CONV_THETA.tolist() and bundle.bias[0].tolist() == CONV_BIAS.tolist()
    assert bundle.threshold[-1].tolist() == FC_THETA.tolist() and bundle.bias[-1].tolist() == FC_BIAS.tolist()
    assert np.array_equal(bundle.weights[0], (net[0].weight.detach().numpy() >= 0).astype(np.uint8))
    report = bundle.metadata["nir_import"]["layers"]
    assert all(r.get("weight_binarization_rel_error", 0) < 1e-6 for r in report)
    if pool == "avg":
        assert report[1]["folded_pools"] and bundle.weights[1].shape == (C * 6 * 6, N_OUT)
    back = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    assert back.same_as(bundle)

    hidden, out = _run_snntorch(net, on)
    golden = run_golden(back, on)
    assert hidden.sum() > 0 and out.sum() > 0 and hidden.mean() < 0.9
    assert torch.equal(golden.spikes[0].double(), hidden.double())
    assert torch.equal(golden.spikes[-1].double(), out.double())
    ref = simulate_nir(graph, on)              # the float reading of the NIR file: the same spikes
    assert torch.equal(ref.spikes[-1], out.double())


def test_convolutional_snntorch_bundle_runs_on_the_rtl(tmp_path):
    net, on = _net("max"), _inputs()
    bundle = import_nir(_export(net, "max", tmp_path / "net.nir"), time_steps=T)
    from bsnn.sim.rtl_eval import rtl_evaluate
    from bsnn.sim.toolchain import availability
    reason = availability("verilator")
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    golden = run_golden(bundle, on[:, :4])
    rtl = rtl_evaluate(bundle, on[:, :4], None, progress=False)
    assert rtl["bit_exact"], rtl["mismatches"][:3]
    assert rtl["predictions"] == golden.prediction.tolist()
