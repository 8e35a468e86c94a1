import numpy as np
import pytest

from bsnn.training import data
from .conftest import need


@need("mnist")
def test_mnist_test_split():
    ds = data.load_mnist("test")
    assert ds.images.shape == (10000, 784) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (10000,) and ds.labels.min() == 0 and ds.labels.max() == 9
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the canonical first t10k labels


@need("fashion-mnist")
def test_fashion_test_split():
    ds = data.load_fashion_mnist("test")
    assert ds.images.shape == (10000, 784)
    assert np.bincount(ds.labels).tolist() == [1000] * 10


@need("nmnist-small")
def test_nmnist_file_and_listing():
    ds = data.load_nmnist("test")
    assert len(ds) == 100 and len(ds.events) == 100
    ev = ds.events[0]
    assert 1069 <= len(ev) <= 7152
    assert ev["x"].max() < 34 and ev["y"].max() < 34
    assert set(np.unique(ev["p"]).tolist()) <= {0, 1} and len(np.unique(ev["p"])) == 2
    assert np.all(np.diff(ev["ts"]) >= 0) and ev["ts"].max() < 400_000


def test_missing_dataset_one_line_error(tmp_path):
    with pytest.raises(data.DatasetMissingError) as e:
        data.load_mnist("train", root=tmp_path)
    assert "\n" not in str(e.value) and "not found" in str(e.value)


def test_bs2_decoding(tmp_path):
    # x=3, y=33, ON, ts=0x012345 ; x=0, y=1, OFF, ts=7
    raw = bytes([3, 33, 0x80 | 0x01, 0x23, 0x45, 0, 1, 0x00, 0x00, 0x07])
    (tmp_path / "1.bs2").write_bytes(raw)
    ev = data.read_bs2(tmp_path / "1.bs2")
    assert ev["x"].tolist() == [3, 0] and ev["y"].tolist() == [33, 1]
    assert ev["p"].tolist() == [1, 0] and ev["ts"].tolist() == [0x012345, 7]


def test_random_shift():
    import torch

    img = np.zeros((3, 784), np.uint8)
    img[:, 14 * 28 + 14] = 255
    out = data.random_shift(img, 2, torch.Generator().manual_seed(0))
    assert out.shape == img.shape and (out == 255).sum(1).tolist() == [1, 1, 1]
    pos = np.argmax(out, 1)
    assert all(abs(p // 28 - 14) <= 2 and abs(p % 28 - 14) <= 2 for p in pos)
    assert data.random_shift(img, 0) is img


def test_random_hflip():
    import torch

    img = np.zeros((64, 784), np.uint8)
    img[:, 5 * 28 + 3] = 200          # row 5, column 3 -> column 24 when mirrored
    out = data.random_hflip(img, torch.Generator().manual_seed(0))
    kept = out[:, 5 * 28 + 3] == 200
    mirrored = out[:, 5 * 28 + 24] == 200
    assert np.all(kept ^ mirrored) and (out > 0).sum(1).tolist() == [1] * 64
    assert 10 < kept.sum() < 54      # both outcomes occur


def test_random_shift_counts():
    import torch

    on = torch.zeros(2, 3, 34 * 34, dtype=torch.int64)
    on[:, :, 17 * 34 + 17] = torch.tensor([[1, 2, 3], [4, 5, 6]])
    off = on.clone()
    a, o = data.random_shift_counts(on, 3, torch.Generator().manual_seed(1))
    b, _ = data.random_shift_counts(off, 3, offsets=o)
    assert torch.equal(a, b) and torch.equal(a.sum(2), on.sum(2))
    pos = a[0].argmax(1)
    assert torch.equal(a[1].argmax(1), pos)  # same offset at every step
