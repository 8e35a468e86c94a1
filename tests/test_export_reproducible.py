"""The shipped MNIST models are reproducible: exporting a committed checkpoint gives the
committed bundle bit for bit (weights, parameters, and the manifest with its provenance)."""
import filecmp
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint, name", [("mnist", "mnist"), ("mnist_h2", "mnist_h2"),
                                              ("mnist_lat_h1_ft", "mnist_lat_h1")])
def test_export_of_shipped_checkpoint_reproduces_committed_bundle(tmp_path, monkeypatch,
                                                                   checkpoint, name):
    from bsnn.training.export import export_checkpoint
    monkeypatch.chdir(ROOT)
    export_checkpoint(f"models/checkpoints/{checkpoint}.pt", tmp_path / name)
    names = sorted(p.name for p in (ROOT / "models" / name).iterdir())
    assert names == sorted(p.name for p in (tmp_path / name).iterdir())
    match, mismatch, errors = filecmp.cmpfiles(ROOT / "models" / name, tmp_path / name, names, shallow=False)
    assert not mismatch and not errors, f"differ: {mismatch} {errors}"


@pytest.mark.parametrize("checkpoint, bundle", [("conv_mnist_long", "conv_mnist"),
                                                ("conv_nmnist2", "conv_nmnist"),
                                                ("conv_fashion_ft", "conv_fashion"),
                                                ("conv_fashion_widen_t10", "conv_fashion_wide"),
                                                ("conv_mnist_up5k", "conv_mnist_up5k"),
                                                ("conv_mnist_strided_t8", "conv_mnist_strided")])
def test_convolutional_bundles_come_from_their_committed_checkpoints(tmp_path, monkeypatch,
                                                                      checkpoint, bundle):
    """The shipped convolutional bundles (trained on a GPU, conv_mnist_up5k, conv_mnist_strided and conv_fashion_wide on the CPU; the
    last two's checkpoints compact, `bsnn compact`) are the export of the committed checkpoints on the CPU: every memory image bit for bit and the manifest but for the golden
    evaluation (10,000 conv images are minutes; the accuracy itself is in the metadata)."""
    import json
    from bsnn.training.export import export_checkpoint
    monkeypatch.chdir(ROOT)
    export_checkpoint(f"models/checkpoints/{checkpoint}.pt", tmp_path / bundle, golden_eval=False)
    shipped = ROOT / "models" / bundle
    images = sorted(p.name for p in shipped.glob("*.bin"))
    assert images == sorted(p.name for p in (tmp_path / bundle).glob("*.bin")) and len(images) >= 8
    match, mismatch, errors = filecmp.cmpfiles(shipped, tmp_path / bundle, images, shallow=False)
    assert not mismatch and not errors, f"differ: {mismatch} {errors}"
    ours, theirs = (json.loads((d / "manifest.json").read_text()) for d in (shipped, tmp_path / bundle))
    meta_ours, meta_theirs = ours.pop("metadata"), theirs.pop("metadata")
    assert ours == theirs
    for key in ("checkpoint_sha256", "config", "history", "epochs_trained"):
        assert meta_ours[key] == meta_theirs[key], key
