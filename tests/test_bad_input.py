"""Bad input, as a hostile new user would give it, to every ``bsnn`` command: each case must exit 2
with exactly one line on stderr and no traceback (README: "every command refuses bad input with a
one-line error and exit code 2").

The commands run in-process (``bsnn.cli.main``) against a workspace of broken files built here: a
small synthetic MNIST-format dataset and its damaged copies, damaged bundles, checkpoints, TOML
configs, hardware manifests and NIR files. A few cases run through the real entry point
(``python -m bsnn``) to show that the process behaves the same. Numeric arguments and config keys
are also covered generatively: every option with a range, every key of the training and hardware
schemas.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsnn.cli import main
from bsnn.firmware_export.bundle import random_bundle, save_bundle
from bsnn.hdl.config import MAX_LANES, HardwareConfig, build_key
from bsnn.nir_interop.export import write_nir
from bsnn.training.train import DEFAULTS

TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
N_SAMPLES = 24


# ---------------------------------------------------------------------------------------------
# the workspace of broken inputs

def _idx(data: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, data.ndim) + struct.pack(">" + "I" * data.ndim, *data.shape) + \
        data.astype(np.uint8).tobytes()


def _write_dataset(root, images, labels, image_bytes=None, label_bytes=None):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    (folder / TEST_IMAGES).write_bytes(gzip.compress(_idx(images)) if image_bytes is None else image_bytes)
    (folder / TEST_LABELS).write_bytes(gzip.compress(_idx(labels)) if label_bytes is None else label_bytes)
    return root


def _tamper_nir(source, target, edit):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        edit(f)


def _replace(f, key, value):
    del f[key]
    f[key] = value


def _edit_json(f, key, change):
    obj = json.loads(f[key][()])
    change(obj)
    _replace(f, key, json.dumps(obj))


def _flip_weight(f):
    w = f["node/nodes/fc2/weight"][...]
    w[1, 2] *= -1      # still +1/-1: only the digest in the metadata can tell
    f["node/nodes/fc2/weight"][...] = w


def _scale_tau(f):
    tau = f["node/nodes/lif1/tau"][...]
    f["node/nodes/lif1/tau"][...] = 2 * tau


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(14)
    bundle = random_bundle(rng, sizes=[784, 12, 10], time_steps=2)
    bundle.layers[0] = type(bundle.layers[0])(size=12, leak_v=1)    # an LIF node in the NIR export
    bundle.metadata = {}
    save_bundle(bundle, root / "model")
    (root / "adir").mkdir()
    (root / "afile.txt").write_text("not a folder\n")

    # datasets: healthy, and every way a download can be damaged
    images = rng.integers(0, 256, (N_SAMPLES, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, N_SAMPLES, dtype=np.uint8)
    _write_dataset(root / "ds_ok", images, labels)
    good = gzip.compress(_idx(images))
    _write_dataset(root / "ds_truncated", images, labels, image_bytes=good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    _write_dataset(root / "ds_corrupt", images, labels, image_bytes=bytes(flipped))
    _write_dataset(root / "ds_not_gzip", images, labels, label_bytes=b"labels, honest")
    _write_dataset(root / "ds_empty", images, labels, image_bytes=b"")
    _write_dataset(root / "ds_label_range", images, np.where(np.arange(N_SAMPLES) == 5, 42, labels))
    _write_dataset(root / "ds_counts", images, labels[:-3])
    _write_dataset(root / "ds_shape", images.reshape(N_SAMPLES, 49, 16), labels)

    # a manifest nested 3,000 deep, with a valid checksum (json's recursion limit, not the sum)
    shutil.copytree(root / "model", root / "deep")
    manifest = json.loads((root / "deep" / "manifest.json").read_text())
    manifest.pop("metadata", None)
    raw = json.dumps(manifest)[:-1] + ', "metadata": {"x": ' + "[" * 3000 + "]" * 3000 + "}}"
    (root / "deep" / "manifest.json").write_text(raw)
    (root / "deep" / "manifest.sha256").write_text(
        f"{hashlib.sha256(raw.encode()).hexdigest()}  manifest.json\n")

    # checkpoints that are not
    (root / "garbage.pt").write_bytes(b"\x80\x04garbage, not a checkpoint")
    (root / "empty.pt").write_bytes(b"")
    with zipfile.ZipFile(root / "zip.pt", "w") as z:
        z.writestr("notes.txt", "a zip archive, but no pickle")
    torch.save({"model": {}}, root / "real.pt")
    blob = (root / "real.pt").read_bytes()
    (root / "truncated.pt").write_bytes(blob[: len(blob) // 2])

    # hardware TOMLs
    toml = {"hw_type": '[hardware]\nlanes = "8"\n', "hw_table": "hardware = 3\n",
            "hw_unknown": "[hardware]\nlanse = 8\n", "hw_rule": "[hardware]\nlanes = 8\nneuron_lanes = 3\n",
            "hw_malformed": "[hardware\nlanes = 8\n", "hw_board": "[board]\nclock_mhz = -33\n",
            "hw_flash_loader": "[board]\nflash_loader = 0\n", "hw_dsp": '[board]\ndsp = "yes"\n'}
    # training configs: the 13 kinds of bad value of the issue, and more
    base = ('name = "bad"\n[data]\ndataset = "mnist"\n[encoding]\nkind = "rate"\ntime_steps = 2\n'
            '[model]\nhidden = [8]\n[train]\n')
    train = {"t_epoch": "epoch = 3", "t_epochs_negative": "epochs = -1", "t_batch": "batch_size = -64",
             "t_lr_nan": "lr = nan", "t_lr_inf": "lr = inf", "t_device": 'device = "tpu"',
             "t_optimizer": 'optimizer = "adamw"', "t_threads": "threads = 0", "t_seed": "seed = -1",
             "t_momentum": "momentum = 2.0", "t_schedule": 'schedule = "linear"',
             "t_epochs_float": "epochs = 2.5", "t_epochs_bool": "epochs = true",
             "t_init_garbage": f'init_from = "{root / "garbage.pt"}"',
             "t_init_missing": f'init_from = "{root / "absent.pt"}"'}
    for name, line in train.items():
        toml[name] = base + line + "\n"
    toml["t_ok"] = base + "epochs = 1\n"
    toml["t_train_limt"] = base.replace("[data]\n", "[data]\ntrain_limt = 5\n")
    toml["t_events_on_mnist"] = base.replace('kind = "rate"', 'kind = "events"')
    toml["t_section"] = base + "[trian]\nepochs = 1\n"
    toml["t_table"] = 'model = 3\n'
    toml["t_sweep"] = base + "[sweep]\ngammas = [0.1, nan]\n"
    toml["t_sweep_key"] = base + "[sweep]\ngamma = [0.1]\n"
    for name, text in toml.items():
        (root / f"{name}.toml").write_text(text)

    # bitstream build folders: a manifest the board checker can use, broken ones
    for name, text in {"build_ok": json.dumps({"build_key": build_key(bundle, HardwareConfig())}),
                       "build_json": '{"build_key": ', "build_deep": "[" * 5000 + "]" * 5000,
                       "build_key": json.dumps({"build_key": {"sizes": "many"}})}.items():
        (root / name).mkdir()
        (root / name / "hardware.json").write_text(text)

    # NIR files of the model: tampered after export
    write_nir(bundle, root / "m.nir")
    edits = {
        "nir_weight": _flip_weight,
        "nir_tau": _scale_tau,
        "nir_json": lambda f: _replace(f, "node/metadata/bsnn", "{not json"),
        "nir_missing": lambda f: _edit_json(f, "node/metadata/bsnn", lambda m: m.pop("time_steps")),
        "nir_extra": lambda f: _edit_json(f, "node/metadata/bsnn", lambda m: m.update(spare=1)),
        "nir_type": lambda f: _edit_json(f, "node/metadata/bsnn", lambda m: m.update(v_width="16")),
        "nir_version": lambda f: _replace(f, "node/metadata/bsnn_version", "one"),
        "nir_theta": lambda f: _replace(f, "node/nodes/lif1/metadata/bsnn_threshold",
                                        f["node/nodes/lif1/metadata/bsnn_threshold"][...] + 0.5),
        "nir_layer": lambda f: _edit_json(f, "node/nodes/lif1/metadata/bsnn_layer",
                                          lambda m: m.update(reset="sideways")),
        "nir_deep": lambda f: _replace(f, "node/metadata/bsnn", "[" * 100_000 + "]" * 100_000),
    }
    for name, edit in edits.items():
        _tamper_nir(root / "m.nir", root / f"{name}.nir", edit)
    (root / "junk.nir").write_bytes(b"not HDF5")
    return root


def run_bsnn(argv, capsys):
    """(exit status, stdout, stderr) of ``bsnn argv`` run in this process."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:     # argparse's own exit
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, expected=None):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ": error: " in lines[0]
    if expected:
        assert expected in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# the table: (argv, a piece of the one line), {ws} is the workspace

CASES = [
    # eval: numbers, paths, encodings, datasets, bundles
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --limit 0", "argument --limit"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --limit -9990", "argument --limit"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --limit many", "argument --limit"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --encoding events",
     "encoding 'events' does not fit dataset mnist"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --encoding rat", "argument --encoding"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --json {ws}/adir", "is a folder"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --json {ws}/afile.txt/r.json",
     "is not a folder"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/adir", "is a folder"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/absent.toml",
     "no such file"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_type.toml",
     "hardware.lanes: must be an integer"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_table.toml",
     "hardware: must be a table"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_unknown.toml",
     "did you mean hardware.lanes?"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_rule.toml",
     "neuron_lanes"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_malformed.toml",
     "malformed"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_board.toml",
     "board.clock_mhz"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_flash_loader.toml",
     "board.flash_loader: must be true or false"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --hw-config {ws}/hw_dsp.toml",
     "board.dsp: must be true or false"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_truncated", "corrupt or truncated gzip"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_corrupt", "corrupt or truncated gzip"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_not_gzip", TEST_LABELS),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_empty", "truncated IDX header"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_label_range",
     "label 42 of sample 5 is outside 0..9"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_counts", "24 images but 21 labels"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_shape", "expected 28x28 images"),
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/absent", "no such folder"),
    ("eval --model {ws}/deep --dataset mnist --data-root {ws}/ds_ok", "nested too deeply"),
    ("eval --model {ws}/afile.txt --dataset mnist --data-root {ws}/ds_ok", "not a bundle directory"),
    ("eval --model {ws}/model --dataset cifar", "argument --dataset"),
    ("eval --model {ws}/model", "required: --dataset"),
    # verilog
    ("verilog --model {ws}/model --out {ws}/afile.txt", "exists and is not a folder"),
    ("verilog --model {ws}/model --out {ws}/v --vectors -9995", "argument --vectors"),
    ("verilog --model {ws}/model --out {ws}/v --lanes 0", "argument --lanes"),
    (f"verilog --model {{ws}}/model --out {{ws}}/v --lanes {MAX_LANES + 1}", "argument --lanes"),
    ("verilog --model {ws}/model --out {ws}/v --hw-config {ws}/hw_table.toml", "hardware: must be a table"),
    ("verilog --model {ws}/deep --out {ws}/v", "nested too deeply"),
    # export: checkpoints that are not
    ("export --checkpoint {ws}/garbage.pt --out {ws}/b", "not a PyTorch checkpoint"),
    ("export --checkpoint {ws}/empty.pt --out {ws}/b", "empty file"),
    ("export --checkpoint {ws}/adir --out {ws}/b", "not a regular file"),
    ("export --checkpoint {ws}/zip.pt --out {ws}/b", "no data.pkl"),
    ("export --checkpoint {ws}/truncated.pt --out {ws}/b", "or truncated"),
    ("export --checkpoint {ws}/absent.pt --out {ws}/b", "no such file"),
    ("export --checkpoint {ws}/real.pt --out {ws}/b --limit -5", "argument --limit"),
    ("export --checkpoint {ws}/real.pt --out {ws}/afile.txt", "exists and is not a folder"),
    # train: the config schema
    ("train --config /dev/null", "/dev/null: not a regular file"),
    ("train --config {ws}/t_epoch.toml", "train.epoch: unknown key; did you mean train.epochs?"),
    ("train --config {ws}/t_train_limt.toml", "data.train_limt: unknown key; did you mean data.train_limit?"),
    ("train --config {ws}/t_section.toml", "trian: unknown key; did you mean train?"),
    ("train --config {ws}/t_table.toml", "model: must be a table"),
    ("train --config {ws}/t_epochs_negative.toml", "train.epochs: must be an integer >= 1, got -1"),
    ("train --config {ws}/t_epochs_float.toml", "train.epochs: must be an integer >= 1, got 2.5"),
    ("train --config {ws}/t_epochs_bool.toml", "train.epochs: must be an integer >= 1, got true"),
    ("train --config {ws}/t_batch.toml", "train.batch_size: must be an integer >= 1, got -64"),
    ("train --config {ws}/t_lr_nan.toml", "train.lr: must be a finite number > 0, got nan"),
    ("train --config {ws}/t_lr_inf.toml", "train.lr: must be a finite number > 0, got inf"),
    ("train --config {ws}/t_device.toml", "train.device: must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
    ("train --config {ws}/t_optimizer.toml", "train.optimizer"),
    ("train --config {ws}/t_threads.toml", "train.threads"),
    ("train --config {ws}/t_seed.toml", "train.seed"),
    ("train --config {ws}/t_momentum.toml", "train.momentum"),
    ("train --config {ws}/t_schedule.toml", "train.schedule"),
    ("train --config {ws}/t_events_on_mnist.toml", "encoding.kind: 'events' does not fit"),
    ("train --config {ws}/t_init_garbage.toml", "train.init_from"),
    ("train --config {ws}/t_init_missing.toml", "train.init_from"),
    ("train --config {ws}/t_sweep.toml", "sweep.gammas"),
    ("train --config {ws}/hw_malformed.toml", "malformed"),
    ("train --config {ws}/adir", "is a folder"),
    ("train --config {ws}/t_epoch.toml --epochs 0", "argument --epochs"),
    ("train --config {ws}/t_ok.toml --resume {ws}/garbage.pt", "not a PyTorch checkpoint"),
    ("train --config {ws}/t_ok.toml --resume {ws}/absent.pt", "--resume"),
    ("train --config {ws}/t_epoch.toml --device tpu", "argument --device"),
    # sweep
    ("sweep --config {ws}/t_sweep_key.toml --out {ws}/s", "sweep.gamma: unknown key; did you mean sweep.gammas?"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s", "train.epoch: unknown key"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s --gammas 0.1,nan", "argument --gammas"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s --methods mssr,lasso", "argument --methods"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s --init-from {ws}/empty.pt", "argument --init-from"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/afile.txt/s", "is not a folder"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s --ship {ws}/afile.txt", "argument --ship"),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s --target-spikes -1", "argument --target-spikes"),
    # sim, lint, random-model
    ("sim --cases 0", "argument --cases"),
    ("sim --seed -3", "argument --seed"),
    ("lint {ws}/absent", "no such file or folder"),
    ("random-model --out {ws}/afile.txt", "exists and is not a folder"),
    ("random-model --out {ws}/r --sizes 784", "argument --sizes"),
    ("random-model --out {ws}/r --time-steps 0", "argument --time-steps"),
    ("random-model --out {ws}/r --leak 16", "argument --leak"),
    # nir
    ("nir export --model {ws}/model --out {ws}/adir", "is a folder"),
    ("nir export --model {ws}/model --out {ws}/m2.nir --dt inf", "argument --dt"),
    ("nir export --model {ws}/model --out {ws}/m2.nir --dt 0", "argument --dt"),
    ("nir export --model {ws}/model --out {ws}/m2.nir --dt nan", "argument --dt"),
    ("nir export --model {ws}/deep --out {ws}/m2.nir", "nested too deeply"),
    ("nir import {ws}/nir_weight.nir --out {ws}/n", "node 'fc2': weights disagree with the bsnn metadata"),
    ("nir import {ws}/nir_tau.nir --out {ws}/n", "node 'lif1': tau disagree with the bsnn metadata"),
    ("nir import {ws}/nir_json.nir --out {ws}/n", "metadata.bsnn: missing or malformed"),
    ("nir import {ws}/nir_missing.nir --out {ws}/n", "metadata.bsnn: missing time_steps"),
    ("nir import {ws}/nir_extra.nir --out {ws}/n", "metadata.bsnn: unknown spare"),
    ("nir import {ws}/nir_type.nir --out {ws}/n", "v_width: must be int"),
    ("nir import {ws}/nir_version.nir --out {ws}/n", "bsnn_version"),
    ("nir import {ws}/nir_theta.nir --out {ws}/n", "bsnn_threshold: must be 12 integers"),
    ("nir import {ws}/nir_layer.nir --out {ws}/n", "reset"),
    ("nir import {ws}/nir_deep.nir --out {ws}/n", "metadata.bsnn: missing or malformed"),
    ("nir import {ws}/junk.nir --out {ws}/n", "not a readable NIR file"),
    ("nir import {ws}/absent.nir --out {ws}/n", "no such file"),
    ("nir import {ws}/m.nir --nir {ws}/m.nir --out {ws}/n", "give the NIR file once"),
    ("nir import {ws}/m.nir --out {ws}/n --time-steps 0", "argument --time-steps"),
    ("nir import {ws}/m.nir --out {ws}/n --v-width 1", "argument --v-width"),
    ("nir import {ws}/m.nir --out {ws}/n --v-width 12", "v_width=12 differs from the exported"),
    ("nir import {ws}/m.nir --out {ws}/afile.txt", "exists and is not a folder"),
    # the passthrough commands: their own parsers, the same one-line errors
    ("weights --build {ws}/absent --model {ws}/model", "no such folder"),
    ("weights --build {ws}/adir --model {ws}/model", "hardware.json: missing"),
    ("weights --build {ws}/build_ok --model {ws}/model", "family"),
    ("weights --build {ws}/build_json --model {ws}/model", "hardware manifest: malformed"),
    ("weights --build {ws}/build_deep --model {ws}/model", "nested too deeply"),
    ("weights --build {ws}/build_ok --model {ws}/model --out {ws}/adir", "is a folder"),
    ("weights --model {ws}/model", "required: --build"),
    ("bitstream --board nope --model {ws}/model", "argument --board"),
    ("bitstream --board icebreaker --model {ws}/absent", "not a bundle directory"),
    ("bitstream --board icebreaker --model {ws}/model --hw-config {ws}/hw_unknown.toml",
     "did you mean hardware.lanes?"),
    ("bitstream --board icebreaker --model {ws}/model --clock-mhz 0", "argument --clock-mhz"),
    ("bitstream --board icebreaker --model {ws}/model --seeds 4-1", "argument --seeds"),
    # the serial port (pyserial's SerialException is an OSError; without pyserial a DeviceError)
    ("board --port {ws}/no-such-port --build {ws}/build_ok --model {ws}/model --data-root {ws}/ds_ok",
     "bsnn board: error: "),
    ("board --port {ws}/no-such-port --build {ws}/adir --model {ws}/model", "no hardware manifest"),
    ("board --port {ws}/no-such-port --build {ws}/build_key --model {ws}/model", "build_key"),
    ("board --port {ws}/no-such-port --build {ws}/build_deep --model {ws}/model", "nested too deeply"),
    ("board --port {ws}/no-such-port --build {ws}/build_ok --model {ws}/deep", "nested too deeply"),
    ("board --port p --build {ws}/build_ok --model {ws}/model --limit 0", "argument --limit"),
    ("board --port p --build {ws}/build_ok --model {ws}/model --json {ws}/adir", "is a folder"),
    # no command at all, an unknown one
    ("", "required: COMMAND"),
    ("frobnicate", "argument COMMAND"),
]


@pytest.mark.parametrize("command, expected", CASES, ids=[c[0].split(" --")[0] or "(none)" for c in CASES])
def test_bad_input_is_one_line_and_exit_2(ws, capsys, command, expected):
    argv = command.replace("{ws}", str(ws)).split()
    code, _, err = run_bsnn(argv, capsys)
    assert_one_line_error(code, err, expected.replace("{ws}", str(ws)))


# ---------------------------------------------------------------------------------------------
# the same through the installed entry point

@pytest.mark.parametrize("command, expected", [
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok --limit 0", "bsnn eval: error: argument --limit"),
    ("weights --build {ws}/build_json --model {ws}/model", "bsnn weights: error: "),
    ("nir import {ws}/nir_weight.nir --out {ws}/n", "bsnn nir import: error: node 'fc2': weights disagree"),
])
def test_the_real_entry_point_behaves_the_same(ws, command, expected):
    proc = subprocess.run([sys.executable, "-m", "bsnn", *command.replace("{ws}", str(ws)).split()],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, expected)


# ---------------------------------------------------------------------------------------------
# what was accepted silently is refused, what is valid gives the right result

def test_a_valid_request_still_works_and_honours_the_limit(ws, capsys, tmp_path):
    report = tmp_path / "r.json"
    code, out, err = run_bsnn(["eval", "--model", str(ws / "model"), "--dataset", "mnist", "--data-root",
                               str(ws / "ds_ok"), "--limit", "7", "--quiet", "--json", str(report)], capsys)
    assert code == 0, err
    assert json.loads(report.read_text())["samples"] == 7


def test_nothing_is_written_for_a_refused_request(ws, capsys, tmp_path):
    out = tmp_path / "v"
    code, _, err = run_bsnn(["verilog", "--model", str(ws / "model"), "--out", str(out), "--lanes", "0"], capsys)
    assert_one_line_error(code, err)
    assert not out.exists()


def test_a_refused_nir_file_imports_with_recompile(ws, capsys, tmp_path):
    code, out, err = run_bsnn(["nir", "import", str(ws / "nir_weight.nir"), "--out", str(tmp_path / "b"),
                               "--recompile", "--time-steps", "2"], capsys)
    assert code == 0, err
    assert "compiled from a foreign graph" in out


# ---------------------------------------------------------------------------------------------
# generated: every numeric option with a range, every key of the schemas

NUMERIC_OPTIONS = [   # (argv before the option, option, smallest valid, largest valid or None, integer?)
    ("eval --model {ws}/model --dataset mnist --data-root {ws}/ds_ok", "--limit", 1, None, True),
    ("verilog --model {ws}/model --out {ws}/v", "--vectors", 0, None, True),
    ("verilog --model {ws}/model --out {ws}/v", "--lanes", 1, MAX_LANES, True),
    ("export --checkpoint {ws}/real.pt --out {ws}/b", "--limit", 1, None, True),
    ("random-model --out {ws}/r", "--time-steps", 1, 65535, True),
    ("sim", "--cases", 1, None, True),
    ("nir export --model {ws}/model --out {ws}/m2.nir", "--dt", 0.0, None, False),
    ("nir import {ws}/m.nir --out {ws}/n", "--time-steps", 1, 65535, True),
    ("nir import {ws}/m.nir --out {ws}/n", "--max-input-events", 1, (1 << 24) - 1, True),
    ("train --config {ws}/t_epoch.toml", "--epochs", 1, None, True),
    ("train --config {ws}/t_epoch.toml", "--threads", 1, None, True),
    ("sweep --config {ws}/t_epoch.toml --out {ws}/s", "--rtl-samples", 0, None, True),
    ("board --port p --build {ws}/build_ok --model {ws}/model", "--baud", 1, None, True),
    ("bitstream --board icebreaker --model {ws}/model", "--throughput-images", 0, None, True),
]


@st.composite
def bad_numbers(draw):
    prefix, option, lo, hi, integer = draw(st.sampled_from(NUMERIC_OPTIONS))
    below = st.integers(max_value=int(lo) - 1) if integer else st.floats(max_value=lo)
    choices = [below.map(str), st.sampled_from(["nan", "inf", "-inf", "", "1e", "0x10", "four"])]
    if hi is not None:
        choices.append(st.integers(min_value=hi + 1).map(str))
    if integer:
        choices.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x))
                       .map(repr))
    return prefix, option, draw(st.one_of(*choices))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_numbers())
def test_generated_bad_numbers_are_refused(ws, capsys, case):
    prefix, option, value = case
    argv = prefix.replace("{ws}", str(ws)).split() + [f"{option}={value}"]
    code, _, err = run_bsnn(argv, capsys)
    assert_one_line_error(code, err, f"argument {option}")


def _leaves(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + key + ".")
        else:
            yield prefix + key, value


def _wrong_value(default):
    """A value of the wrong type for a key whose default is ``default``."""
    if isinstance(default, str):
        return "7"
    if isinstance(default, bool):
        return '"yes"'
    if isinstance(default, list):
        return '"400"'
    return '"3"'     # numbers, and the optional keys whose default is None (strings given as a table)


@pytest.mark.parametrize("key, default", list(_leaves(DEFAULTS)))
def test_every_training_key_refuses_a_wrong_type(tmp_path, capsys, key, default):
    section, _, name = key.rpartition(".")
    value = "{ x = 1 }" if default is None else _wrong_value(default)
    text = (f"[{section}]\n" if section else "") + f"{name} = {value}\n"
    (tmp_path / "c.toml").write_text(text)
    code, _, err = run_bsnn(["train", "--config", str(tmp_path / "c.toml")], capsys)
    assert_one_line_error(code, err, f": {key}: must be")


@pytest.mark.parametrize("key", sorted(k for k, _ in _leaves(DEFAULTS)))
def test_every_training_key_suggests_itself_for_a_typo(tmp_path, capsys, key):
    section, _, name = key.rpartition(".")
    typo = name[0] + name[2:] if len(name) > 3 else name + name[-1]     # a letter dropped or doubled
    (tmp_path / "c.toml").write_text((f"[{section}]\n" if section else "") + f"{typo} = 1\n")
    code, _, err = run_bsnn(["train", "--config", str(tmp_path / "c.toml")], capsys)
    assert_one_line_error(code, err, f"unknown key; did you mean {key}?")


@pytest.mark.parametrize("key", [f.name for f in __import__("dataclasses").fields(HardwareConfig)])
def test_every_hardware_key_refuses_a_wrong_type(ws, tmp_path, capsys, key):
    (tmp_path / "hw.toml").write_text(f'[hardware]\n{key} = {{ x = 1 }}\n')
    code, _, err = run_bsnn(["verilog", "--model", str(ws / "model"), "--out", str(tmp_path / "v"),
                             "--hw-config", str(tmp_path / "hw.toml")], capsys)
    assert_one_line_error(code, err, f"hardware.{key}: must be")
