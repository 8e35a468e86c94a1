"""training/ablation.py: one run per label (MLP ablation) and several seeds per arm (mean, spread,
paired differences), on run folders written here and on real tiny training runs."""
import contextlib
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from bsnn.training import ablation
from bsnn.training.ablation import ARMS, arm_config, describe, main, summarize
from .conftest import need

REPO = Path(__file__).resolve().parents[2]


def _history(accs, flips, iter_flips, spikes, layers=(0.2, 0.1, 0.3, 0.0)):
    return [{"epoch": e + 1, "loss": 1.0 / (e + 1), "train_acc": a - 0.01, "test_acc": a,
             "flip_rate": f, "flip_rate_layers": [f, 0.0, 2 * f, f / 2],
             "iter_flip_rate": i, "iter_flip_rate_layers": [i, 0.0, 2 * i, i / 2],
             "firing_rate_layers": [x * (1 + e) for x in layers], "spikes_per_neuron_hidden": s,
             "alpha": [[1.0, 1.0]]}
            for e, (a, f, i, s) in enumerate(zip(accs, flips, iter_flips, spikes))]


def _run(root, name, seed, hist, features=("4c5", "pool2", "8c3")):
    d = root / name
    d.mkdir()
    (d / "diagnostics.json").write_text(json.dumps(hist))
    (d / "config.json").write_text(json.dumps({"train": {"seed": seed},
                                               "model": {"features": list(features), "hidden": []}}))
    return d


def test_describe_mean_sample_std_min_max_and_missing():
    d = describe([0.9, None, 0.8, 0.95])
    assert d["n"] == 3 and d["missing"] == 1
    assert d["mean"] == pytest.approx(statistics.mean([0.9, 0.8, 0.95]))
    assert d["std"] == pytest.approx(statistics.stdev([0.9, 0.8, 0.95]))
    assert (d["min"], d["max"]) == (0.8, 0.95)
    assert describe([3]) == {"n": 1, "missing": 0, "mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0}
    assert describe([None, None])["mean"] is None


def test_summarize_epoch_to_target_and_layer_means():
    h = _history([0.5, 0.8, 0.9, 0.85], [0.1, 0.05, 0.02, 0.01], [1e-3, 5e-4, 2e-4, 1e-4], [0.3] * 4)
    s = summarize(h, 0.85)
    assert s["epochs_to_target"] == 3 and s["final_test_acc"] == 0.85 and s["best_test_acc"] == 0.9
    assert s["flip_rate_epoch1"] == 0.1 and s["iter_flip_rate_epoch1"] == 1e-3
    assert s["mean_flip_rate_all"] == pytest.approx(0.045)
    assert s["mean_flip_rate_layers_all"][2] == pytest.approx(0.09)
    assert s["final_firing_rate_layers"] == pytest.approx([0.8, 0.4, 1.2, 0.0])
    assert summarize(h, 0.95)["epochs_to_target"] is None


def _three_arms(tmp_path):
    """Arm A (3 seeds) and arm B (3 seeds) with known numbers; B's runs listed in another seed order."""
    a_acc = {0: [0.6, 0.9, 0.93], 1: [0.7, 0.92, 0.95], 2: [0.5, 0.8, 0.91]}
    b_acc = {0: [0.6, 0.85, 0.9], 1: [0.7, 0.9, 0.94], 2: [0.5, 0.7, 0.8]}
    a_flip = {0: 0.10, 1: 0.12, 2: 0.11}
    b_flip = {0: 0.20, 1: 0.16, 2: 0.15}
    a = [_run(tmp_path, f"a_s{s}", s, _history(a_acc[s], [a_flip[s]] * 3, [1e-3] * 3, [0.4, 0.4, 0.5 + s / 10]))
         for s in (0, 1, 2)]
    b = [_run(tmp_path, f"b_s{s}", s, _history(b_acc[s], [b_flip[s]] * 3, [2e-3] * 3, [0.3, 0.3, 0.3]))
         for s in (2, 0, 1)]
    return a, b, a_acc, b_acc, a_flip, b_flip


def test_grouped_report_mean_spread_and_paired_by_seed(tmp_path):
    a, b, a_acc, b_acc, a_flip, b_flip = _three_arms(tmp_path)
    out = tmp_path / "rep" / "abl"
    assert main(["--arm", "A", *map(str, a), "--arm", "B", *map(str, b), "--reference", "B",
                 "--target", "0.9", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    sa, sb = doc["arms"]["A"]["stats"], doc["arms"]["B"]["stats"]
    finals = [a_acc[s][-1] for s in (0, 1, 2)]
    assert sa["final_test_acc"]["mean"] == pytest.approx(statistics.mean(finals))
    assert sa["final_test_acc"]["std"] == pytest.approx(statistics.stdev(finals))
    assert (sa["final_test_acc"]["min"], sa["final_test_acc"]["max"]) == (0.91, 0.95)
    # epochs to 90 %: A reaches at 2, 2, 3; B at 3, 2 and never (seed 2)
    assert sa["epochs_to_target"]["mean"] == pytest.approx(7 / 3) and sa["epochs_to_target"]["missing"] == 0
    assert sb["epochs_to_target"]["n"] == 2 and sb["epochs_to_target"]["missing"] == 1
    assert sb["epochs_to_target"]["mean"] == pytest.approx(2.5)
    assert sb["mean_flip_rate_all"]["mean"] == pytest.approx(statistics.mean(b_flip.values()))
    assert sa["final_spikes_per_neuron_hidden"]["max"] == pytest.approx(0.7)
    # per layer: firing of the last epoch (x3 of the base), layer by layer
    assert [d["mean"] for d in sa["final_firing_rate_layers"]] == pytest.approx([0.6, 0.3, 0.9, 0.0])
    # paired by seed, not by order (B was listed 2, 0, 1)
    p = doc["paired"]["A"]
    assert p["seeds"] == [0, 1, 2]
    diffs = [a_acc[s][-1] - b_acc[s][-1] for s in (0, 1, 2)]
    assert p["final_test_acc"]["mean"] == pytest.approx(statistics.mean(diffs))
    assert p["final_test_acc"]["std"] == pytest.approx(statistics.stdev(diffs))
    assert p["final_test_acc"]["max"] == pytest.approx(0.11)
    fdiff = [a_flip[s] - b_flip[s] for s in (0, 1, 2)]
    assert p["mean_flip_rate_all"]["min"] == pytest.approx(min(fdiff))
    assert p["epochs_to_target"]["n"] == 2   # seed 2: B never reached the target
    assert "B" not in doc["paired"]
    md = out.with_suffix(".md").read_text()
    assert "| A | 3 | 93.00 ± 2.00 [91.00, 95.00]" in md
    assert "(2/3 reached)" in md and "4c5" in md and "8c3" in md
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_single_runs_keep_the_one_run_per_label_report(tmp_path):
    a, b, *_ = _three_arms(tmp_path)
    out = tmp_path / "single"
    assert main([str(a[0]), str(b[1]), "--labels", "AGMM", "no AGMM", "--out", str(out), "--target", "0.9"]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert set(doc) == {"AGMM", "no AGMM"}
    assert doc["AGMM"]["epochs_to_target"] == 2 and doc["AGMM"]["final_test_acc"] == 0.93
    assert doc["no AGMM"]["epochs_to_target"] == 3   # b[1] is seed 0
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0].startswith("| run | epochs | epochs to 90% |") and md[2].startswith("| AGMM | 3 | 2 | 93.00 % |")
    # --epochs truncates every run
    assert main([str(a[0]), "--out", str(out), "--target", "0.9", "--epochs", "1"]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["a_s0"]["epochs"] == 1 and doc["a_s0"]["epochs_to_target"] is None


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    a, b, *_ = _three_arms(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "x")
    cases = [
        (["--arm", "A", str(a[0]), "--arm", "B", str(empty), "--out", out], "diagnostics.json"),
        (["--arm", "A", str(a[0]), "--arm", "A", str(b[0]), "--out", out], "appears twice"),
        (["--arm", "A", str(a[0]), "--reference", "C", "--out", out], "none of the arms"),
        (["--arm", "A", str(a[0]), str(a[0]), "--out", out], "seed 0 appears twice"),
        (["--arm", "A", "--out", out], "at least one run folder"),
        ([str(a[0]), "--arm", "A", str(a[0]), "--out", out], "exactly one"),
        ([str(a[0]), "--out", out, "--epochs", "4"], "fewer than --epochs"),
    ]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "diagnostics.json").write_text("[{\"epoch\": 1}]")
    cases.append(([str(tmp_path / "bad"), "--out", out], "lacks"))
    for argv, text in cases:
        with pytest.raises(SystemExit) if "exactly one" in text else contextlib.nullcontext():
            assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and text in err, (argv, err)
    assert not (tmp_path / "x.json").exists()


def test_arm_config_sets_agmm_seed_and_folder(tmp_path):
    cfgs = {arm: arm_config(REPO / "configs" / "agmm_conv.toml", arm, 7, tmp_path) for arm in ARMS}
    assert cfgs["gradient"]["agmm"]["enabled"] and cfgs["gradient"]["agmm"]["mode"] == "gradient"
    assert not cfgs["none"]["agmm"]["enabled"]
    assert cfgs["forward"]["agmm"]["enabled"] and cfgs["forward"]["agmm"]["mode"] == "forward"
    for arm, cfg in cfgs.items():
        assert cfg["train"]["seed"] == 7 and cfg["export"]["dir"] is None
        assert cfg["train"]["out_dir"] == str(tmp_path / f"{arm}_s7")
        # everything else is the config's
        assert cfg["model"]["features"] == ["8c5", "pool2", "16c5", "pool2"]
        assert cfg["data"]["train_limit"] == 20000


@need("mnist")
def test_config_mode_trains_the_arms_then_reports(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('name = "tiny"\n[data]\ndataset = "mnist"\ntrain_limit = 96\ntest_limit = 64\n'
                   '[encoding]\nkind = "rate"\ntime_steps = 2\n'
                   '[model]\nfeatures = ["2c5", "pool2"]\nhidden = []\n'
                   '[train]\nepochs = 1\nbatch_size = 32\neval_batch_size = 64\ninit_batch = 32\n')
    runs, out = tmp_path / "runs", tmp_path / "rep"
    argv = ["--config", str(cfg), "--seeds", "3", "4", "--runs-dir", str(runs), "--out", str(out),
            "--target", "0.2", "--threads", "1", "--gates", "16"]
    assert main(argv) == 0
    for arm in ARMS:
        for seed in (3, 4):
            conf = json.loads((runs / f"{arm}_s{seed}" / "config.json").read_text())
            assert conf["train"]["seed"] == seed and conf["agmm"]["enabled"] == (arm != "none")
    doc = json.loads((out.with_suffix(".json")).read_text())
    assert set(doc["arms"]) == {label for label, _ in ARMS.values()}
    assert doc["reference"] == ARMS["none"][0]
    assert doc["paired"][ARMS["gradient"][0]]["seeds"] == [3, 4]
    for label, arm in doc["arms"].items():
        assert len(arm["runs"]) == 2 and arm["stats"]["final_test_acc"]["n"] == 2
        for run in arm["runs"]:   # gates measured on the AGMM runs' checkpoints: conv layer, dense layer
            assert [g["layer"] for g in run.get("gates", [])] == ([] if label == ARMS["none"][0] else [0, 2])
    assert "AGMM gates on test inputs" in out.with_suffix(".md").read_text()
    # a second call keeps the finished runs (no training) and reports the same numbers
    before = (runs / "gradient_s3" / "diagnostics.json").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("kept") == 6
    assert (runs / "gradient_s3" / "diagnostics.json").read_text() == before
    assert json.loads(out.with_suffix(".json").read_text())["arms"] == doc["arms"]


@pytest.mark.parametrize("mode", ["gradient", "forward"])
def test_gate_statistics_measure_the_gate_on_the_ungated_current(mode):
    from bsnn.training.ablation import gate_statistics
    from bsnn.training.model import BSNN, LayerConfig

    torch.manual_seed(1)
    layers = [LayerConfig(16), LayerConfig(4, reset="none", learn_threshold=False)]
    model = BSNN(30, layers, 3, agmm={"enabled": True, "mode": mode}, theta_init=[3, 1])
    with torch.no_grad():
        model.gates[0].alpha.copy_(torch.tensor([2.0, -1.0, 0.5]))
    on = (torch.rand(3, 8, 30) < 0.4).long()
    stats = gate_statistics(model, on)
    assert [s["layer"] for s in stats] == [0, 1]
    assert stats[0]["alpha"] == [2.0, -1.0, 0.5] and stats[1]["alpha"] == [1.0, 1.0, 1.0]
    # layer 1's current, computed here: the sum of the +-1 weights of the input events
    x = model.synaptic(0, model.input_events(on, None, torch.float32),
                       model.signed_weights(0, False, torch.float32)).detach()
    sig = torch.sigmoid(x.mean(-1) / math.sqrt(30))
    g = torch.tensor([2.0, -1.0, 0.5]).view(3, 1) * sig
    assert stats[0]["sigmoid"]["mean"] == pytest.approx(float(sig.mean()), rel=1e-6)
    assert stats[0]["gate"]["mean"] == pytest.approx(float(g.mean()), rel=1e-5)
    assert stats[0]["gate"]["min"] == pytest.approx(float(g.min()), rel=1e-5)
    assert stats[0]["gate"]["rel_spread"] == pytest.approx(float(g.std() / g.mean().abs()), rel=1e-4)
    assert stats[0]["sigmoid_rel_spread_within_step"] == pytest.approx(
        float(sig.std(dim=1).mean() / sig.mean()), rel=1e-5)
    assert gate_statistics(BSNN(30, layers, 3, agmm={"enabled": False}, theta_init=[3, 1]), on) == []
    assert not any(g._forward_hooks for g in model.gates)   # the hooks are removed
