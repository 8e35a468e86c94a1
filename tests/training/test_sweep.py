"""bsnn sweep on a tiny grid: a tiny network, two strengths, a few hundred samples (seconds)."""
import argparse
import json

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import load_bundle
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.generate import cycle_estimate
from bsnn.sweep import add_sweep_arguments, evaluate_bundle, run_sweep, select_best
from bsnn.training.train import build_data, load_config
from .conftest import need

TOML = """
name = "tiny_sweep"
[data]
dataset = "mnist"
train_limit = 384
test_limit = 100
[encoding]
kind = "rate"
time_steps = 3
[model]
hidden = [16, 12]
[train]
epochs = 2
batch_size = 64
lr = 1e-2
eval_batch_size = 100
init_batch = 64
"""


@need("mnist")
def test_tiny_sweep_writes_points_plots_and_ships(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TOML)
    out = tmp_path / "sweep"
    p = add_sweep_arguments(argparse.ArgumentParser())
    args = p.parse_args(["--config", str(cfg), "--out", str(out), "--methods", "mssr",
                         "--gammas", "0.05,5", "--runs-dir", str(tmp_path / "runs"),
                         "--ship", str(tmp_path / "ship"), "--target-spikes", "10", "--max-drop", "100",
                         "--no-progress"])
    assert run_sweep(args) == 0
    doc = json.loads((tmp_path / "sweep.json").read_text())
    keys = [pt["key"] for pt in doc["points"]]
    assert keys == ["none", "mssr_g0.05", "mssr_g5"]
    for pt in doc["points"]:
        ev = pt["eval"]
        assert ev["n"] == 100 and 0 <= ev["acc"] <= 1 and len(ev["spikes_per_neuron_layers"]) == 2
        assert ev["spikes_per_neuron"] == pytest.approx(np.average(ev["spikes_per_neuron_layers"], weights=[16, 12]))
        assert ev["cycles_per_inference"] > 0 and ev["sops_per_inference"] > 0
    sp = {pt["key"]: pt["eval"]["spikes_per_neuron"] for pt in doc["points"]}
    assert sp["mssr_g5"] < sp["none"]  # a strong regularizer fires less
    assert (tmp_path / "sweep_firing.png").stat().st_size > 1000
    assert (tmp_path / "sweep_cycles.png").stat().st_size > 1000
    shipped = load_bundle(tmp_path / "ship")
    assert shipped.metadata["ssr"]["method"] == "mssr" and "reference_model" in shipped.metadata
    # a second run finds every point done and only re-selects
    assert run_sweep(args) == 0
    assert len(json.loads((tmp_path / "sweep.json").read_text())["points"]) == 3


@need("mnist")
def test_evaluate_bundle_counts_like_golden_and_cycle_model(tmp_path):
    from bsnn.training.model import BSNN, LayerConfig
    torch.manual_seed(0)
    cfg = load_config(None, {"data": {"test_limit": 30, "train_limit": 10}, "encoding": {"time_steps": 3}})
    _, test = build_data(cfg)
    m = BSNN(784, [LayerConfig(20), LayerConfig(10, reset="none", learn_threshold=False)], 3,
             weight_init=0.5, theta_init=[6, 1])
    bundle = m.to_bundle()
    ev = evaluate_bundle(bundle, test, batch_size=7)
    on, off, y = test.batch(torch.arange(30))
    g = run_golden(bundle, on, off)
    assert ev["acc"] == float((g.prediction == y).double().mean())
    assert ev["spikes_per_neuron"] == pytest.approx(float(g.spikes[0].sum()) / 30 / 20)
    geom = CoreGeometry.from_bundle(bundle, HardwareConfig())
    cyc = [cycle_estimate(geom, 3, g.events_per_layer[:, b].tolist())
           for b in range(30)]
    assert ev["cycles_per_inference"] == pytest.approx(sum(cyc) / 30)
    assert ev["sops_per_inference"] == float(g.sops.double().mean())


def test_select_best():
    def pt(m, acc, sp):
        return {"key": f"{m}{acc}", "method": m, "eval": {"acc": acc, "spikes_per_neuron": sp}}
    pts = [pt("reference", 0.99, 0.5), pt("none", 0.98, 0.5), pt("mssr", 0.978, 0.19),
           pt("mssr", 0.979, 0.25), pt("fssr", 0.97, 0.1)]
    ref, best, meets = select_best(pts, 0.2, 0.5)
    assert ref["method"] == "none" and best["eval"]["acc"] == 0.978 and meets
    _, _, meets = select_best(pts, 0.2, 0.1)
    assert meets is False
