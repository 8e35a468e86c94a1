"""Compact checkpoints (``bsnn compact``, training/checkpoint.py): the binary weights as sign bits,
small enough to commit, exporting to the same bundle; malformed ones are one-line errors."""
import filecmp
import math
from pathlib import Path

import pytest
import torch

from bsnn.cli import main as bsnn_main
from bsnn.training.builders import build_model
from bsnn.training.checkpoint import CheckpointError, compact_checkpoint, load_checkpoint
from bsnn.training.export import export_checkpoint, load_checkpoint_model
from bsnn.training.train import load_config

ROOT = Path(__file__).resolve().parents[2]


def _full_checkpoint(path: Path) -> dict:
    """A checkpoint as `bsnn train` writes it: latent weights of every magnitude (some exactly 0,
    which the hardware counts as +1), biases and thresholds with fractions, Adam's state."""
    cfg = load_config(None, {"model": {"features": ["4c3p1", "pool2", "6c3s2"], "hidden": [10]},
                             "agmm": {"enabled": True}, "encoding": {"kind": "rate", "time_steps": 4}})
    net = build_model(cfg, 784, 784)
    on = (torch.rand(4, 32, 784, generator=torch.Generator().manual_seed(1)) < 0.3).long()
    net.init_thresholds(on)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for k in net.neuron_layers:
            net.weights[k].copy_(torch.randn(net.weights[k].shape, generator=gen))
            net.weights[k].view(-1)[::7] = 0.0
            if net.bias[k].requires_grad:
                net.bias[k].add_(3 * torch.randn(net.bias[k].shape, generator=gen))
    opt = torch.optim.Adam(net.parameters())
    net(on).v[-1].sum().backward()
    opt.step()
    ck = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": {"last_epoch": 1},
          "config": cfg, "input_size": 784, "max_input_events": 784, "epoch": 1,
          "history": [{"epoch": 1, "test_acc": 0.5, "train_acc": 0.5}], "rng": torch.get_rng_state()}
    torch.save(ck, path)
    return ck


def test_compact_checkpoint_rebuilds_the_same_integer_network(tmp_path):
    full = _full_checkpoint(tmp_path / "full.pt")
    assert bsnn_main(["compact", "--checkpoint", str(tmp_path / "full.pt"),
                      "--out", str(tmp_path / "small.pt")]) == 0
    assert (tmp_path / "small.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size / 2
    a, _ = load_checkpoint_model(tmp_path / "full.pt")
    b, ck = load_checkpoint_model(tmp_path / "small.pt")
    for x, y in zip(a.hardware_params(), b.hardware_params()):
        for u, v in zip(x, y):
            assert (u == v).all()
    assert sum(int((p.detach() == 0).sum()) for p in a.weights) > 0   # zeros were there and stayed +1
    # the latent weights come back as +-(the tensor's mean magnitude); the rest exactly
    for name, value in full["model"].items():
        if name.startswith("weights.") and value.numel():
            mag = float(value.abs().mean())
            assert torch.allclose(ck["model"][name].abs(), torch.full(value.shape, mag))
        else:
            assert torch.equal(ck["model"][name], value), name
    assert ck["history"] == full["history"] and ck["config"] == full["config"]
    on = (torch.rand(4, 16, 784, generator=torch.Generator().manual_seed(5)) < 0.3).long()
    assert torch.equal(a(on, hardware=True).v[-1], b(on, hardware=True).v[-1])


def test_compact_checkpoint_cannot_resume_and_replaces_only_its_own_kind(tmp_path, capsys, monkeypatch):
    _full_checkpoint(tmp_path / "full.pt")
    small = tmp_path / "small.pt"
    assert bsnn_main(["compact", "--checkpoint", str(tmp_path / "full.pt"), "--out", str(small)]) == 0
    with pytest.raises(CheckpointError, match="compact checkpoint .*no optimizer.*cannot resume"):
        load_checkpoint(small, required=("model", "optimizer", "scheduler"))
    assert bsnn_main(["compact", "--checkpoint", str(tmp_path / "full.pt"), "--out", str(small)]) == 0
    capsys.readouterr()
    # the full checkpoint is not something `bsnn compact` wrote: never replaced
    before = (tmp_path / "full.pt").read_bytes()
    assert bsnn_main(["compact", "--checkpoint", str(small), "--out", str(tmp_path / "full.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an earlier output" in err
    assert (tmp_path / "full.pt").read_bytes() == before
    # a file larger than any compact checkpoint is refused without being read
    import bsnn.training.export as export_module
    monkeypatch.setattr(export_module, "_MAX_COMPACT_BYTES", small.stat().st_size - 1)
    assert bsnn_main(["compact", "--checkpoint", str(tmp_path / "full.pt"), "--out", str(small)]) == 2
    assert "not an earlier output" in capsys.readouterr().err


@pytest.mark.parametrize("damage, message", [
    (lambda c: c["compact"].update(format=2), "format 2"),
    (lambda c: c["compact"]["signs"]["weights.0"].update(bits=torch.zeros(3, dtype=torch.uint8)),
     "do not hold"),
    (lambda c: c["compact"]["signs"]["weights.0"].update(bits=torch.zeros(5, dtype=torch.int64)),
     "do not hold"),
    (lambda c: c["compact"]["signs"]["weights.0"].update(magnitude=-1.0), "magnitude"),
    (lambda c: c["compact"]["signs"]["weights.0"].update(magnitude=math.nan), "magnitude"),
    (lambda c: c["compact"]["signs"]["weights.0"].update(shape=[4, -1]), "shape"),
    (lambda c: c["compact"]["signs"].update({"bias.0": c["compact"]["signs"]["weights.0"]}),
     "not a binary weight"),
    (lambda c: c["model"].update({"weights.0": torch.zeros(1)}), "appears twice"),
])
def test_malformed_compact_checkpoint_is_a_one_line_error(tmp_path, damage, message):
    ck = compact_checkpoint(_full_checkpoint(tmp_path / "full.pt"))
    damage(ck)
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)


def test_compact_form_of_a_committed_checkpoint_exports_the_shipped_bundle(tmp_path, monkeypatch):
    """Real weights: the UP5K conv model's checkpoint, compacted, exports every memory image of
    the shipped bundle bit for bit."""
    monkeypatch.chdir(ROOT)
    small = tmp_path / "conv_mnist_up5k.pt"
    assert bsnn_main(["compact", "--checkpoint", "models/checkpoints/conv_mnist_up5k.pt",
                      "--out", str(small)]) == 0
    assert small.stat().st_size < 0.25 * (ROOT / "models/checkpoints/conv_mnist_up5k.pt").stat().st_size
    export_checkpoint(small, tmp_path / "bundle", golden_eval=False)
    shipped = ROOT / "models" / "conv_mnist_up5k"
    images = sorted(p.name for p in shipped.glob("*.bin"))
    assert len(images) >= 6
    _, mismatch, errors = filecmp.cmpfiles(shipped, tmp_path / "bundle", images, shallow=False)
    assert not mismatch and not errors
