"""The shipped MNIST model is reproducible: exporting its committed checkpoint gives the
committed bundle bit for bit (weights, parameters, and the manifest with its provenance)."""
import filecmp
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_export_of_shipped_checkpoint_reproduces_committed_bundle(tmp_path, monkeypatch):
    from bsnn.training.export import export_checkpoint
    monkeypatch.chdir(ROOT)
    export_checkpoint("models/checkpoints/mnist.pt", tmp_path / "mnist")
    names = sorted(p.name for p in (ROOT / "models" / "mnist").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "mnist").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(ROOT / "models" / "mnist", tmp_path / "mnist", names, shallow=False)
    assert not mismatch and not errors, f"differ: {mismatch} {errors}"
