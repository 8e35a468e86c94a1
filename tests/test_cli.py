"""The bsnn command as a user runs it: help, reports, and one-line errors without tracebacks."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bsnn.firmware_export.bundle import load_bundle

BSNN = [sys.executable, "-m", "bsnn"]


def run(*args):
    return subprocess.run(BSNN + list(args), capture_output=True, text=True)


def test_help_lists_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for sub in ("random-model", "verilog", "eval", "train", "export", "sweep", "sim", "lint", "nir",
                "bitstream", "weights", "flash-image", "compact"):
        assert sub in out.stdout


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    out = run("random-model", "--out", str(path), "--sizes", "784,32,10", "--time-steps", "3")
    assert out.returncode == 0, out.stderr
    return path


def test_eval_golden_writes_the_report(model, tmp_path):
    report = tmp_path / "r.json"
    out = run("eval", "--model", str(model), "--dataset", "mnist", "--limit", "40", "--quiet",
              "--json", str(report))
    assert out.returncode == 0, out.stderr
    r = json.loads(report.read_text())
    assert r["samples"] == 40 and 0.0 <= r["accuracy"] <= 1.0
    assert r["sops_per_inference"] > 0 and r["spikes_per_neuron"] >= 0
    assert "accuracy" in out.stdout


def test_damaged_bundle_gives_one_line_error_and_no_report(model, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    data = bytearray((bad / "layer1_weights.bin").read_bytes())
    data[5] ^= 1
    (bad / "layer1_weights.bin").write_bytes(bytes(data))
    report = tmp_path / "r.json"
    out = run("eval", "--model", str(bad), "--dataset", "mnist", "--limit", "5", "--json", str(report))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "layer1_weights.bin: sha256: checksum mismatch" in out.stderr
    assert not report.exists()


def test_missing_dataset_is_a_clear_error(model, tmp_path):
    out = run("eval", "--model", str(model), "--dataset", "mnist", "--data-root", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not found" in out.stderr


def test_dataset_of_the_wrong_size_is_refused(model):
    out = run("eval", "--model", str(model), "--dataset", "nmnist", "--limit", "2")
    assert out.returncode == 2 and "1156 inputs but the model expects 784" in out.stderr


def test_random_model_is_a_valid_bundle(model):
    b = load_bundle(model)
    assert b.sizes == [784, 32, 10] and b.time_steps == 3
    assert all(np.isin(w, (0, 1)).all() for w in b.weights)


@pytest.mark.parametrize("sub", ["export", "compact", "sweep", "sim", "lint", "bitstream", "weights", "board", "train",
                                 "flash-image"])
def test_every_subcommand_has_help(sub):
    out = run(sub, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr


def test_verilog_writes_hex_binary_header_and_vectors(model, tmp_path):
    out = tmp_path / "v"
    res = run("verilog", "--model", str(model), "--out", str(out), "--vectors", "2")
    assert res.returncode == 0, res.stderr
    for name in ("bsnn_core.v", "weights.hex", "weights.bin", "bias.bin", "model.h",
                 "golden_vectors.jsonl", "hardware.json"):
        assert (out / name).exists(), name
    words = (out / "weights.hex").read_text().split()
    blob = (out / "weights.bin").read_bytes()
    n = len(blob) // len(words)
    assert [int(w, 16) for w in words] == [int.from_bytes(blob[i * n:(i + 1) * n], "little")
                                           for i in range(len(words))]
    assert len((out / "golden_vectors.jsonl").read_text().strip().split("\n")) == 2
