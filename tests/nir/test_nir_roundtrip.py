"""Bundles through NIR files and back: bit-exact, same golden-model outputs, edits refused."""
import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from bsnn.firmware_export.bundle import Bundle, LayerSpec, random_bundle
from bsnn.firmware_export.golden import run_golden
from bsnn.nir_interop import NIRImportError, export_nir, import_nir, simulate_nir, write_nir


def _random_inputs(bundle: Bundle, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    shape = (bundle.time_steps, batch, bundle.input_size)
    on = (torch.rand(shape, generator=g) < 0.35).to(torch.int64)
    off = (torch.rand(shape, generator=g) < 0.15).to(torch.int64)
    return on, off


def _same_results(a, b):
    assert torch.equal(a.prediction, b.prediction)
    assert torch.equal(a.count, b.count) and torch.equal(a.first, b.first)
    for x, y in zip(a.spikes + a.v + a.c, b.spikes + b.v + b.c):
        assert torch.equal(x, y)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_bundles_round_trip_through_a_nir_file_bit_exactly(tmp_path, seed):
    bundle = random_bundle(np.random.default_rng(seed))
    path = write_nir(bundle, tmp_path / "model.nir")
    back = import_nir(path)
    assert bundle.same_as(back)
    assert back.metadata == bundle.metadata
    on, off = _random_inputs(bundle, 8, seed % 1000)
    _same_results(run_golden(bundle, on, off), run_golden(back, on, off))


@pytest.mark.parametrize("seed", range(12))
def test_extreme_widths_and_values_round_trip(tmp_path, seed):
    # 32-bit widths with thresholds and biases at the ends of their ranges: exact in float64 NIR fields.
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng, sizes=[5, 4, 3], v_width=32, c_width=int(rng.integers(2, 33)),
                           bias_width=32)
    bundle.threshold[0][:] = (1 << 31) - 1
    bundle.threshold[1][0] = 1
    bundle.bias[0][:2] = [-(1 << 31), (1 << 31) - 1]
    bundle.layers = [LayerSpec(4, current=True, leak_v=31, leak_c=0, reset="none", fire_once=True),
                     LayerSpec(3, current=bool(seed % 2), leak_v=0, leak_c=1 if seed % 2 else 0)]
    bundle.validate()
    back = import_nir(write_nir(bundle, tmp_path / "m.nir"))
    assert bundle.same_as(back)


def test_the_graph_states_nir_nodes_dt_and_the_integer_semantics():
    bundle = random_bundle(np.random.default_rng(3), sizes=[6, 5, 4, 3], layers=[
        LayerSpec(5, leak_v=0), LayerSpec(4, leak_v=2, reset="zero"),
        LayerSpec(3, current=True, leak_v=1, leak_c=3, reset="none", fire_once=True)])
    graph = export_nir(bundle, dt=1e-3)
    assert [type(graph.nodes[n]).__name__ for n in ("fc1", "lif1", "lif2", "lif3")] == \
        ["Affine", "IF", "LIF", "CubaLIF"]
    assert graph.nodes["fc1"].weight.shape == (5, 6)                 # NIR's [out, in]
    assert np.array_equal(graph.nodes["fc1"].weight, bundle.weights[0].T * 2.0 - 1)
    assert graph.metadata["dt"] == 1e-3
    lif2 = graph.nodes["lif2"]
    assert np.allclose(1 - 1e-3 / lif2.tau, 1 - 2.0 ** -2)           # forward Euler factor = 1 - 2^-k
    assert np.array_equal(lif2.v_threshold, bundle.threshold[1] - 0.5)
    cuba = graph.nodes["lif3"]
    assert np.allclose(1 - 1e-3 / cuba.tau_syn, 1 - 2.0 ** -3)
    assert np.array_equal(cuba.v_leak * 1e-3 / cuba.tau_mem, bundle.bias[2])   # the bias, per step
    assert cuba.metadata["reset_rule"] == "none" and cuba.metadata["fire_once"]


@pytest.mark.parametrize("seed", range(25))
def test_the_foreign_path_recompiles_our_own_export_to_the_same_bundle(tmp_path, seed):
    # Ignoring the bsnn metadata, the continuous-time NIR fields alone (plus the reset/fire_once
    # hints) give back the same integer network: the mapping formulas are the exact inverse of
    # the export's.
    bundle = random_bundle(np.random.default_rng(1000 + seed))
    path = write_nir(bundle, tmp_path / "m.nir", dt=(1e-3, 3.7e-3, 1e-4, 7.0)[seed % 4])
    again = import_nir(path, use_metadata=False, v_width=bundle.v_width, c_width=bundle.c_width,
                       bias_width=bundle.bias_width, max_input_events=bundle.max_input_events)
    # leak_c of a layer without a current state means nothing and is not carried by NIR's nodes.
    expected = dataclasses.replace(bundle, layers=[
        layer if layer.current else dataclasses.replace(layer, leak_c=0) for layer in bundle.layers])
    assert expected.same_as(again)


@pytest.mark.parametrize("seed", range(10))
def test_float_reference_equals_golden_for_integrate_and_fire_layers(seed):
    # Without leak, current or saturation the NIR float semantics is the core's, spike for spike.
    # (Reset by subtraction is left out: a float simulator subtracts NIR's v_threshold, which is
    # theta - 0.5, where the core subtracts theta; see docs/nir.md.)
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(3, 12)) for _ in range(int(rng.integers(2, 5)))]
    layers = [LayerSpec(n, reset=str(rng.choice(["zero", "none"])),
                        fire_once=bool(rng.random() < 0.2)) for n in sizes[1:]]
    bundle = random_bundle(rng, sizes=sizes, layers=layers, v_width=20, bias_width=6)
    on, off = _random_inputs(bundle, 16, seed)
    golden = run_golden(bundle, on, off)
    ref = simulate_nir(export_nir(bundle), on, off, readout=bundle.readout)
    for a, b in zip(golden.spikes, ref.spikes):
        assert torch.equal(a.double(), b)
    assert torch.equal(golden.prediction, ref.prediction)


def test_edited_graph_is_refused_with_the_node_named(tmp_path):
    bundle = random_bundle(np.random.default_rng(5), sizes=[4, 3, 2])
    graph = export_nir(bundle)
    graph.nodes["lif2"].v_threshold = graph.nodes["lif2"].v_threshold + 1
    with pytest.raises(NIRImportError, match=r"^node 'lif2': v_threshold disagree"):
        import_nir(graph)
    assert import_nir(graph, use_metadata=False, time_steps=bundle.time_steps).threshold[1].tolist() == \
        (bundle.threshold[1] + 1).tolist()


def test_arguments_contradicting_an_own_export_are_refused():
    bundle = random_bundle(np.random.default_rng(6), sizes=[4, 3], v_width=12)
    with pytest.raises(NIRImportError, match=r"v_width=16 differs from the exported v_width=12"):
        import_nir(export_nir(bundle), v_width=16)
    assert import_nir(export_nir(bundle), v_width=12).same_as(bundle)


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(NIRImportError, match="file: missing"):
        import_nir(tmp_path / "absent.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    with pytest.raises(NIRImportError, match="not a readable NIR file") as info:
        import_nir(tmp_path / "junk.nir")
    assert "\n" not in str(info.value)


def test_write_nir_is_readable_by_nir_itself(tmp_path):
    bundle = random_bundle(np.random.default_rng(8), sizes=[7, 5, 3])
    graph = nir.read(write_nir(bundle, tmp_path / "m.nir"))
    assert set(graph.nodes) == {"input", "fc1", "lif1", "fc2", "lif2", "output"}
    assert sorted(graph.edges) == sorted([("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
                                          ("fc2", "lif2"), ("lif2", "output")])


def test_shipped_mnist_model_round_trips_bit_exactly(tmp_path):
    from pathlib import Path

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.nir_interop import import_nir, write_nir
    model = load_bundle(Path(__file__).resolve().parents[2] / "models" / "mnist")
    write_nir(model, tmp_path / "mnist.nir")
    back = import_nir(tmp_path / "mnist.nir")
    assert back.same_as(model) and back.metadata == model.metadata


def test_the_input_encoding_travels_through_nir_and_old_exports_still_import():
    import json
    encoding = {"kind": "events", "window_us": 5000, "late_events": "drop", "max_per_pixel": 2,
                "width": 3, "height": 4}
    bundle = random_bundle(np.random.default_rng(4), sizes=[12, 5, 2], encoding=encoding)
    graph = export_nir(bundle)
    assert json.loads(graph.metadata["input_encoding"]) == encoding
    assert import_nir(graph).encoding == encoding
    # a graph exported from a schema version 1 bundle: the encoding in the bundle's metadata
    sem = json.loads(graph.metadata["bsnn"])
    sem["metadata"]["encoding"] = dict(sem.pop("encoding"), time_steps=bundle.time_steps)
    graph.metadata["bsnn"] = json.dumps(sem)
    back = import_nir(graph)
    assert back.encoding == encoding and "encoding" not in back.metadata and back.same_as(bundle)
    sem["metadata"]["encoding"]["window"] = 1
    graph.metadata["bsnn"] = json.dumps(sem)
    with pytest.raises(NIRImportError, match="metadata.encoding.window: unknown parameter of events"):
        import_nir(graph)
