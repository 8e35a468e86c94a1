import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import load_bundle
from bsnn.firmware_export.golden import run_golden
from bsnn.training.averaging import WeightAverage
from bsnn.training.checkpoint import CheckpointError
from bsnn.training.export import export_checkpoint, load_checkpoint_model
from bsnn.training.train import build_data, load_config, main, train
from .conftest import need

REPO = Path(__file__).resolve().parents[2]


def tiny(tmp_path, **over):
    cfg = {
        "name": "tiny",
        "data": {"dataset": "mnist", "train_limit": 384, "test_limit": 128},
        "encoding": {"kind": "rate", "time_steps": 3},
        "model": {"hidden": [24]},
        "agmm": {"enabled": True},
        "train": {"epochs": 3, "batch_size": 64, "lr": 5e-3, "out_dir": str(tmp_path / "run"),
                  "eval_batch_size": 128, "init_batch": 128},
        "export": {"dir": None},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return load_config(None, cfg)


@need("mnist")
def test_tiny_training_improves_loss_and_exports_exactly(tmp_path):
    s = train(tiny(tmp_path), progress=False)
    hist = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["test_acc"] > 0.5
    for key in ("flip_rate", "flip_rate_layers", "firing_rate_layers", "train_acc", "test_acc"):
        assert key in hist[-1]
    assert (tmp_path / "run" / "diagnostics.png").stat().st_size > 1000
    meta = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "bundle")
    # the exported integer model has exactly the accuracy measured during training
    assert meta["test_acc_hardware_exact"] == hist[-1]["test_acc"] == meta["test_acc_model_hardware_mode"]
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.metadata["test_acc_hardware_exact"] == meta["test_acc_hardware_exact"]
    model, ck = load_checkpoint_model(tmp_path / "run" / "last.pt")
    _, test = build_data(ck["config"])
    on, off, _ = test.batch(torch.arange(32))
    gold = run_golden(bundle, on, off)
    res = model(on, off, hardware=True)
    for a, b in zip(res.spikes, gold.spikes):
        assert torch.equal(a, b)
    assert torch.equal(res.prediction, gold.prediction)


@need("mnist")
def test_export_with_other_time_steps_runs_the_same_parameters_longer(tmp_path, capsys):
    """``time_steps`` at export: the same integer parameters, the bundle's T replaced, the trained
    T recorded, and both test accuracies measured at the new T (the model's hardware mode equals
    the golden model on the bundle); the trained T itself changes nothing, bit for bit."""
    from bsnn.cli import main as bsnn_main
    from bsnn.training.export import with_time_steps
    train(tiny(tmp_path, train={"epochs": 1}), progress=False)
    ckpt = tmp_path / "run" / "last.pt"
    export_checkpoint(ckpt, tmp_path / "t3", golden_eval=False)
    export_checkpoint(ckpt, tmp_path / "t3_again", golden_eval=False, time_steps=3)
    for f in sorted(p.name for p in (tmp_path / "t3").iterdir()):
        assert (tmp_path / "t3" / f).read_bytes() == (tmp_path / "t3_again" / f).read_bytes(), f
    meta = export_checkpoint(ckpt, tmp_path / "t7", time_steps=7)
    short, long = load_bundle(tmp_path / "t3"), load_bundle(tmp_path / "t7")
    assert (short.time_steps, long.time_steps, meta["time_steps_trained"]) == (3, 7, 3)
    assert long.metadata["config"]["encoding"]["time_steps"] == 3     # provenance as trained
    for a, b in zip(short.weights + short.bias + short.threshold, long.weights + long.bias + long.threshold):
        assert np.array_equal(a, b)
    model, ck = load_checkpoint_model(ckpt, time_steps=7)
    assert model.time_steps == 7
    _, test = build_data(with_time_steps(ck["config"], 7))
    on, off, _ = test.batch(torch.arange(32))
    assert on.shape[0] == 7
    gold, res = run_golden(long, on, off), model(on, off, hardware=True)
    assert all(torch.equal(a, b) for a, b in zip(res.spikes, gold.spikes))
    assert meta["test_acc_hardware_exact"] == meta["test_acc_model_hardware_mode"]
    # the longer run is a different measurement, not the trained one copied
    assert not torch.equal(run_golden(short, *build_data(ck["config"])[1].batch(torch.arange(32))[:2]).hidden_spikes,
                           gold.hidden_spikes)
    for bad in (0, -1, 1 << 16, 2.5, True):
        with pytest.raises(CheckpointError, match="^time_steps must be an integer"):
            export_checkpoint(ckpt, tmp_path / "bad", time_steps=bad)
        with pytest.raises(CheckpointError, match="^time_steps must be an integer"):
            load_checkpoint_model(ckpt, time_steps=bad)
    assert not (tmp_path / "bad").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        bsnn_main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "bad"), "--time-steps", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--time-steps" in err and "\n" not in err and not (tmp_path / "bad").exists()


@need("mnist")
def test_resume_reproduces_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(tmp_path, train={"epochs": 2, "out_dir": str(full)}), progress=False)
    main(["--config", str(_write_toml(tmp_path, part, 2)), "--stop-after", "1", "--no-progress"])
    assert torch.load(part / "last.pt", weights_only=False)["epoch"] == 1
    main(["--config", str(_write_toml(tmp_path, part, 2)), "--resume", "--no-progress"])
    a = torch.load(full / "last.pt", weights_only=False)
    b = torch.load(part / "last.pt", weights_only=False)
    assert b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert [drop(h) for h in a["history"]] == [drop(h) for h in b["history"]]


def test_weight_average_is_the_uniform_mean_of_the_updates():
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net)
    assert avg.averaged(net) is net          # nothing averaged yet: the model itself
    seen = []
    for k in range(4):
        with torch.no_grad():
            net.weight.fill_(float(k * k))
        avg.update(net)
        seen.append(net.weight.detach().clone())
    twin = avg.averaged(net)
    assert twin is not net and torch.equal(net.weight, seen[-1])   # the trained model is untouched
    assert torch.allclose(twin.weight, torch.stack(seen).mean(0))  # (0 + 1 + 4 + 9) / 4


@need("mnist")
def test_averaging_run_exports_the_average_and_resumes_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    extra = "average_from = 1"
    main(["--config", str(_write_toml(tmp_path, full, 3, extra)), "--no-progress"])
    a = torch.load(full / "last.pt", weights_only=False)
    steps_per_epoch = 384 // 64
    assert [h["averaged_steps"] for h in a["history"]] == [0, steps_per_epoch, 2 * steps_per_epoch]
    assert a["average"]["steps"] == 2 * steps_per_epoch
    # the checkpoint's model is the average, not the trained state it came from
    assert any(not torch.equal(a["model"][k], a["trained_model"][k]) for k in a["model"])
    meta = export_checkpoint(full / "last.pt", tmp_path / "bundle")
    assert meta["test_acc_hardware_exact"] == a["history"][-1]["test_acc"]
    main(["--config", str(_write_toml(tmp_path, part, 3, extra)), "--stop-after", "2", "--no-progress"])
    main(["--config", str(_write_toml(tmp_path, part, 3, extra)), "--resume", "--no-progress"])
    b = torch.load(part / "last.pt", weights_only=False)
    for key in ("model", "trained_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def _write_toml(tmp_path, out_dir, epochs, extra=""):
    p = tmp_path / f"tiny_{epochs}.toml"
    p.write_text(f"""
name = "tiny"
[data]
dataset = "mnist"
train_limit = 384
test_limit = 128
[encoding]
kind = "rate"
time_steps = 3
[model]
hidden = [24]
[agmm]
enabled = true
[train]
epochs = {epochs}
batch_size = 64
lr = 5e-3
out_dir = "{out_dir}"
eval_batch_size = 128
init_batch = 128
{extra}
[export]
""")
    return p


@need("mnist")
def test_ddp_two_processes(tmp_path):
    cfg = _write_toml(tmp_path, tmp_path / "ddp", 2)
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        f"--master_port={port}", "-m", "bsnn.training.train", "--config", str(cfg),
                        "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    hist = summary["final"]
    assert hist["epoch"] == 2 and 0.0 <= hist["test_acc"] <= 1.0


@need("mnist")
def test_bsnn_cli_train(tmp_path):
    from bsnn.cli import main as bsnn_main

    cfg = _write_toml(tmp_path, tmp_path / "cli", 1)
    assert bsnn_main(["train", "--config", str(cfg), "--no-progress",
                      "--export-dir", str(tmp_path / "bundle")]) == 0
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.sizes == [784, 24, 10] and bundle.readout == "potential"
    assert bundle.metadata["test_acc_hardware_exact"] == bundle.metadata["training_test_acc"]


def test_missing_dataset_cli_error(tmp_path, capsys):
    cfg = _write_toml(tmp_path, tmp_path / "x", 1)
    (tmp_path / "nowhere").mkdir()
    assert main(["--config", str(cfg), "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bsnn train: error: dataset file not found") and "\n" not in err


def test_later_model_keys_are_config_keys_that_old_checkpoints_lack():
    """``LATER_MODEL_KEYS`` fills keys that configs gained after checkpoints were written: each
    must be a real model key (a rename would silently stop filling it), the committed pre-conv
    checkpoint must lack them (else the table is dead), and a key a config has is never replaced."""
    from bsnn.training.builders import LATER_MODEL_KEYS, with_later_keys
    from bsnn.training.checkpoint import load_checkpoint
    from bsnn.training.train import DEFAULTS
    assert set(LATER_MODEL_KEYS) <= set(DEFAULTS["model"])
    old = load_checkpoint(REPO / "models" / "checkpoints" / "mnist.pt")["config"]
    assert not set(LATER_MODEL_KEYS) & set(old["model"])
    filled = with_later_keys(old)
    assert {k: filled["model"][k] for k in LATER_MODEL_KEYS} == LATER_MODEL_KEYS
    assert old["model"].items() <= filled["model"].items() and "features" not in old["model"]
    newer = {"model": {"features": ["8c3"], "input_polarity": "two_channel"}}
    assert with_later_keys(newer) == newer


def test_every_committed_config_loads_and_its_starting_checkpoint_fits():
    """Each TOML in configs/ passes the schema, and a staged config's ``init_from`` checkpoint
    (committed under models/checkpoints/) loads into the network the config builds (or widens
    into it, ``init_layers = "widen"``)."""
    from bsnn.training.builders import build_model
    from bsnn.training.checkpoint import load_checkpoint
    from bsnn.training.train import check_runnable, init_from_state, load_config
    from bsnn.training.widening import widen_state
    configs = sorted((REPO / "configs").glob("*.toml"))
    staged = 0
    for path in configs:
        cfg = load_config(path)
        start = cfg["train"]["init_from"]
        if not start or not start.startswith("models/"):
            continue        # others start from a run of their own (runs/...) or from scratch
        check_runnable(dict(cfg, train=dict(cfg["train"], init_from=str(REPO / start))), path.name)
        ck = load_checkpoint(REPO / start)
        model = build_model(cfg, ck["input_size"], ck["max_input_events"])
        if cfg["train"]["init_layers"] == "widen":
            factors = widen_state(model, ck["model"])
            assert max(m for pair in factors for m in pair) > 1, path.name
        else:
            loaded = init_from_state(model, ck["model"], start, cfg["train"]["init_layers"])
            assert loaded, path.name
        staged += 1
    assert len(configs) >= 25 and staged >= 6
