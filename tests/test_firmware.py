"""The C header and golden vectors: a C99 inference compiled against the generated header must
agree with the golden model, spike for spike, on random bundles of every mode."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.encoding import Encoder
from bsnn.firmware_export.events import events_from_counts, random_counts
from bsnn.firmware_export.firmware import c_header, golden_vectors
from bsnn.firmware_export.golden import run_golden

C_DIR = Path(__file__).resolve().parent.parent / "firmware_export" / "c"


def _compile(bundle, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on PATH")
    (tmp_path / "model.h").write_text(c_header(bundle))
    exe = tmp_path / "check"
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Werror", f"-I{tmp_path}", f"-I{C_DIR}",
                    str(C_DIR / "check_main.c"), "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("seed", range(8))
def test_c_inference_from_header_matches_golden(tmp_path, seed):
    rng = np.random.default_rng(seed)
    bundle = random_bundle(rng)
    exe = _compile(bundle, tmp_path)
    on, off = random_counts(bundle, 4, rng)
    res = run_golden(bundle, on, off)
    text = []
    for b in range(4):
        ev = [(t, i, p) for t, step in enumerate(events_from_counts(on, off, b, rng)) for i, p in step]
        text.append(f"{len(ev)}\n" + "\n".join(f"{t} {i} {p}" for t, i, p in ev))
    out = subprocess.run([str(exe)], input="\n".join(text) + "\n", capture_output=True, text=True,
                         check=True).stdout.split("\n")
    samples, current = [], []
    for line in out:
        if line.startswith("S"):
            current.append(tuple(map(int, line.split()[1:])))
        elif line.startswith("V"):
            current.append(("V",) + tuple(map(int, line.split()[1:])))
        elif line.startswith("C"):
            samples.append((current, int(line.split()[1])))
            current = []
    assert len(samples) == 4
    for b, (records, cls) in enumerate(samples):
        spikes = [r for r in records if r[0] != "V"]
        expected = [(t, k + 1, j) for t in range(bundle.time_steps) for k in range(len(bundle.layers))
                    for j in torch.nonzero(res.spikes[k][t, b]).flatten().tolist()]
        assert spikes == expected
        assert list(records[-1][1:]) == res.v[-1][b].tolist()
        assert cls == int(res.prediction[b])


def test_golden_vectors_describe_each_sample():
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, sizes=[6, 5, 3])
    on, off = random_counts(bundle, 3, rng)
    lines = golden_vectors(bundle, on, off, labels=[1, 2, 0]).strip().split("\n")
    res = run_golden(bundle, on, off)
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["label"] == 1 and first["class"] == int(res.prediction[0])
    assert len(first["events"]) == bundle.time_steps
    assert sum(len(s) for s in first["events"]) == int((on[:, 0] + off[:, 0]).sum())
    assert first["sops"] == int(res.sops[0])


def _compile_encoder(bundle, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on PATH")
    (tmp_path / "model.h").write_text(c_header(bundle))
    exe = tmp_path / "encode"
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}", f"-I{C_DIR}",
                    str(C_DIR / "encode_main.c"), "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("encoding, T", [
    ({"kind": "rate"}, 1), ({"kind": "rate"}, 4), ({"kind": "rate"}, 7),
    ({"kind": "threshold", "threshold": 1}, 3), ({"kind": "threshold", "threshold": 200}, 2),
    ({"kind": "latency"}, 8), ({"kind": "latency", "min_value": 0}, 5), ({"kind": "latency", "min_value": 90}, 16),
])
def test_c_image_encoder_from_header_matches_the_encoder(tmp_path, encoding, T):
    bundle = random_bundle(np.random.default_rng(0), sizes=[256, 3], time_steps=T, encoding=encoding)
    out = subprocess.run([str(_compile_encoder(bundle, tmp_path))], capture_output=True, text=True,
                         check=True).stdout.split()
    c_counts = np.array(out, dtype=np.int64).reshape(256, T, 3)[:, :, 2].T       # [T, pixel value]
    on, _ = Encoder(bundle.encoding, T)(np.arange(256, dtype=np.uint8)[None, :])   # every value once
    assert np.array_equal(c_counts, on[:, 0].numpy())


@pytest.mark.parametrize("late", ["last_step", "drop"])
def test_c_event_encoder_from_header_matches_the_encoder(tmp_path, late):
    encoding = {"kind": "events", "window_us": 70_001, "late_events": late, "max_per_pixel": 3,
                "width": 5, "height": 4}
    bundle = random_bundle(np.random.default_rng(0), sizes=[20, 3], time_steps=6, encoding=encoding)
    header = c_header(bundle)
    assert "#define BSNN_ENCODING_MAX_PER_PIXEL 3" in header and "#define BSNN_ENCODING_WINDOW_US 70001" in header
    ts = np.array([0, 1, 11_666, 11_667, 35_000, 58_334, 70_000, 70_001, 123_456, 10**9])
    out = subprocess.run([str(_compile_encoder(bundle, tmp_path))], input="\n".join(map(str, ts)) + "\n",
                         capture_output=True, text=True, check=True).stdout.strip().split("\n")
    assert out[-1] == f"I {2 * 5 + 1}"
    samples = [np.array([(1, 2, 1, t)], dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("ts", np.int64)])
               for t in ts]
    on, _ = Encoder(bundle.encoding, 6)(samples)
    steps = [int(torch.nonzero(on[:, b, 11]).flatten()[0]) if on[:, b, 11].any() else -1 for b in range(len(ts))]
    assert [int(s) for s in out[:-1]] == steps
    assert steps[-1] == (5 if late == "last_step" else -1)
