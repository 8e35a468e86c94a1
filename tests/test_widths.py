"""Width selection from data: measured extremes are the true extremes, and the widths they call
for really avoid saturation."""
import numpy as np
import torch

from bsnn.firmware_export.bundle import LayerSpec, random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.firmware_export.widths import measure_ranges, signed_bits, width_report


def test_signed_bits():
    assert signed_bits(0, 1) == 2 and signed_bits(-2, 1) == 2 and signed_bits(-3, 0) == 3
    assert signed_bits(0, 127) == 8 and signed_bits(-128, 127) == 8 and signed_bits(-129, 0) == 9


def test_ranges_are_exact_extremes_of_a_hand_case():
    # One neuron, one input, weight +1, bias 0, threshold 100, no leak, no reset: v = 1, 2, 3.
    bundle = random_bundle(np.random.default_rng(0), sizes=[1, 1], time_steps=3, v_width=8,
                           bias_width=4, layers=[LayerSpec(size=1, reset="none")])
    bundle.weights = [np.ones((1, 1), dtype=np.uint8)]
    bundle.bias = [np.zeros(1, dtype=np.int64)]
    bundle.threshold = [np.full(1, 100, dtype=np.int64)]
    r = measure_ranges(bundle, torch.ones(3, 1, 1, dtype=torch.int64))[0]
    assert r["max"]["v"] == 3 and r["min"]["v"] == 0 and r["max"]["syn"] == 1


def test_widths_needed_avoid_saturation_and_narrower_ones_saturate():
    rng = np.random.default_rng(4)
    layers = [LayerSpec(size=12, current=True, reset="none"), LayerSpec(size=5, reset="subtract")]
    bundle = random_bundle(rng, sizes=[30, 12, 5], layers=layers, v_width=20, c_width=20,
                           bias_width=4, time_steps=6)
    on, off = random_counts(bundle, 20, rng, density=0.5)
    rep = width_report(bundle, on, off)
    assert all(sum(l["saturated_updates_at_bundle_widths"].values()) == 0 for l in rep["layers"])
    from dataclasses import replace
    fit = replace(bundle, v_width=rep["v_width_needed"], c_width=rep["c_width_needed"])
    ref = run_golden(bundle, on, off)
    got = run_golden(fit, on, off, track_ranges=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.spikes, got.spikes))
    assert sum(r["saturated"]["v"] + r["saturated"]["c"] for r in got.ranges) == 0
    narrow = replace(bundle, v_width=rep["v_width_needed"] - 1, c_width=rep["c_width_needed"] - 1)
    narrow.threshold = [np.minimum(t, (1 << (narrow.v_width - 1)) - 1) for t in bundle.threshold]
    sat = run_golden(narrow, on, off, track_ranges=True).ranges
    assert sum(r["saturated"]["v"] + r["saturated"]["c"] for r in sat) > 0


def test_width_report_in_batches_equals_one_batch(monkeypatch):
    """The report is computed in batches that fit memory (``batch_for_memory``): extremes merged
    and saturation counts summed over the batches give what one batch gives."""
    import bsnn.firmware_export.golden as golden
    rng = np.random.default_rng(8)
    layers = [LayerSpec(size=12, current=True, reset="none"), LayerSpec(size=5, reset="subtract")]
    bundle = random_bundle(rng, sizes=[30, 12, 5], layers=layers, v_width=5, c_width=5,
                           bias_width=4, time_steps=6)
    bundle.threshold = [np.minimum(t, 15) for t in bundle.threshold]
    on, off = random_counts(bundle, 11, rng, density=0.5)
    whole = width_report(bundle, on, off)
    assert sum(sum(l["saturated_updates_at_bundle_widths"].values()) for l in whole["layers"]) > 0
    monkeypatch.setattr(golden, "BATCH_VALUES", 3 * 6 * golden.network_values(bundle))
    calls = []
    real = golden.run_golden
    monkeypatch.setattr("bsnn.firmware_export.widths.run_golden",
                        lambda b, o, f, **kw: calls.append(o.shape[1]) or real(b, o, f, **kw))
    assert width_report(bundle, on, off) == whole
    assert calls == [3, 3, 3, 2] * 2
