"""Dataset loaders (MNIST, Fashion-MNIST, N-MNIST subset) reading local files only; never downloads."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..firmware_export.errors import DatasetError, InputError

__all__ = [
    "DATASETS",
    "DatasetMissingError",
    "ImageDataset",
    "EventDataset",
    "default_root",
    "load_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_nmnist",
    "read_bs2",
    "load_dataset",
    "DatasetMismatchError",
    "EncodedData",
    "load_encoded",
]

NMNIST_SIDE = 34
NMNIST_INPUTS = NMNIST_SIDE * NMNIST_SIDE  # 1156
NUM_CLASSES = 10   # every dataset here labels its samples 0..9


class DatasetMissingError(DatasetError, FileNotFoundError):
    """A dataset file is not where it was looked for (nothing is ever downloaded)."""


def default_root() -> Path:
    """``$BSNN_DATASETS``, else ``../shared/datasets`` beside the source checkout, else beside the
    current directory (an installed package has no checkout to look beside)."""
    env = os.environ.get("BSNN_DATASETS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout.parent / "shared" / "datasets"
    return Path("..") / "shared" / "datasets"


def _require(path: Path) -> Path:
    if not path.exists():
        raise DatasetMissingError(
            f"dataset file not found: {path} (place the dataset there or pass --data-root; "
            "nothing is downloaded)"
        )
    return path


def load_idx(path: str | Path) -> np.ndarray:
    """Read one gzip-compressed IDX file (uint8 data) into a numpy array; a truncated or corrupt
    file is a one-line :class:`DatasetError` naming it."""
    path = _require(Path(path))
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:   # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: expected {int(np.prod(dims))} bytes of data, got {data.size}")
    return data.reshape(dims)


def _check_labels(labels: np.ndarray, where) -> np.ndarray:
    """Labels outside 0..9 would be scored as wrong answers: refuse them, naming the file."""
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        bad = int(np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))[0])
        raise DatasetError(f"{where}: label {int(labels[bad])} of sample {bad} is outside "
                           f"0..{NUM_CLASSES - 1}")
    return labels


def _check_limit(n) -> None:
    """A selection of the first ``n`` samples needs ``n >= 1`` (``None``: all of them)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise InputError(f"limit: must be a number of samples >= 1, got {n!r}")


@dataclass
class ImageDataset:
    """Images as uint8 ``[n, 784]`` (row-major 28x28) and int64 labels ``[n]``."""

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, n: int | None) -> "ImageDataset":
        _check_limit(n)
        if n is None or n >= len(self):
            return self
        return ImageDataset(self.images[:n], self.labels[:n], self.name)


def _load_idx_pair(directory: Path, split: str, name: str) -> ImageDataset:
    prefix = {"train": "train", "test": "t10k"}[split]
    image_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    label_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    images = load_idx(image_path)
    labels = load_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{image_path}: expected 28x28 images, found shape {list(images.shape)}")
    if labels.ndim != 1:
        raise DatasetError(f"{label_path}: expected one label per sample, found shape {list(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
    _check_labels(labels, label_path)
    return ImageDataset(
        np.ascontiguousarray(images.reshape(images.shape[0], -1)), labels.astype(np.int64), name
    )


def load_mnist(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    """MNIST ``split`` ("train" 60000 or "test" 10000) from ``<root>/mnist``."""
    return _load_idx_pair(Path(root or default_root()) / "mnist", split, "mnist")


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    """Fashion-MNIST ``split`` from ``<root>/fashion-mnist``."""
    return _load_idx_pair(Path(root or default_root()) / "fashion-mnist", split, "fashion-mnist")


def read_bs2(path: str | Path) -> np.ndarray:
    """Events of one N-MNIST ``.bs2`` file as a structured array (x, y, p, ts[us])."""
    path = _require(Path(path))
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise DatasetError(f"{path}: size {raw.size} is not a multiple of 5 bytes (truncated?)")
    ev = raw.reshape(-1, 5).astype(np.int64)
    out = np.empty(ev.shape[0], dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("ts", np.int64)])
    out["x"] = ev[:, 0]
    out["y"] = ev[:, 1]
    out["p"] = ev[:, 2] >> 7
    out["ts"] = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    if out.size and (out["x"].max() >= NMNIST_SIDE or out["y"].max() >= NMNIST_SIDE):
        raise DatasetError(f"{path}: pixel coordinate outside 34x34")
    return out


@dataclass
class EventDataset:
    """Event samples: ``events[i]`` structured arrays (x, y, p, ts), labels int64 ``[n]``."""

    events: list
    labels: np.ndarray
    name: str
    input_size: int = NMNIST_INPUTS

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None) -> "EventDataset":
        _check_limit(n)
        if n is None or n >= len(self):
            return self
        return EventDataset(self.events[:n], self.labels[:n], self.name, self.input_size)


def load_nmnist(split: str = "train", root: str | Path | None = None) -> EventDataset:
    """N-MNIST subset: "train" (ids 1..1000, train1K.txt) or "test" (100, test100.txt)."""
    directory = Path(root or default_root()) / "nmnist-small"
    listing = _require(directory / {"train": "train1K.txt", "test": "test100.txt"}[split])
    ids, labels = [], []
    try:
        lines = listing.read_text().splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{listing}: not a text listing") from None
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            sid, lab = (int(x) for x in line.split())
        except ValueError:
            raise DatasetError(f"{listing}: line {number}: expected '<sample id> <label>', "
                               f"got {line.strip()[:40]!r}") from None
        ids.append(sid)
        labels.append(lab)
    labels = _check_labels(np.asarray(labels, dtype=np.int64), listing)
    events = [read_bs2(directory / f"{sid}.bs2") for sid in ids]
    return EventDataset(events, labels, "nmnist")


_LOADERS = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "fashion": load_fashion_mnist,
    "nmnist": load_nmnist,
}
#: Dataset names ``load_dataset`` accepts ("fashion" is an alias of "fashion-mnist").
DATASETS = tuple(_LOADERS)


def load_dataset(name: str, split: str, root: str | Path | None = None):
    """Dispatch by dataset name ("mnist", "fashion-mnist", "nmnist")."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(_LOADERS)}") from None
    return loader(split, root)


def random_shift(images: np.ndarray, max_shift: int, generator=None, side: int = 28) -> np.ndarray:
    """Translate each ``side x side`` uint8 image by a random integer offset in
    ``[-max_shift, max_shift]`` on both axes, zero-filled (training-time augmentation)."""
    import torch

    if max_shift <= 0:
        return images
    x = torch.as_tensor(np.asarray(images)).reshape(-1, side, side)
    b = x.shape[0]
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    off = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    ar = torch.arange(side)
    rows = (off[0][:, None] + ar)[:, :, None]
    cols = (off[1][:, None] + ar)[:, None, :]
    out = padded[torch.arange(b)[:, None, None], rows, cols]
    return out.reshape(b, -1).numpy()


def random_hflip(images: np.ndarray, generator=None, side: int = 28) -> np.ndarray:
    """Mirror each ``side x side`` image left-right with probability 1/2 (training-time
    augmentation for datasets whose classes are mirror-symmetric, such as Fashion-MNIST)."""
    import torch

    x = torch.as_tensor(np.asarray(images)).reshape(-1, side, side)
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    out = torch.where(flip[:, None, None], x.flip(-1), x)
    return out.reshape(x.shape[0], -1).numpy()


def random_shift_counts(counts, max_shift: int, generator=None, side: int = 34, offsets=None):
    """Translate event counts ``[T, B, side*side]`` per sample (same offset at every step, zero-filled).

    ``offsets`` (``[2, B]`` in ``0 .. 2*max_shift``) lets ON and OFF counts share one draw.
    Returns ``(shifted, offsets)``.
    """
    import torch

    if max_shift <= 0:
        return counts, offsets
    T, b, _ = counts.shape
    x = counts.reshape(T, b, side, side)
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    if offsets is None:
        offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    ar = torch.arange(side)
    rows = (offsets[0][:, None] + ar)[None, :, :, None]
    cols = (offsets[1][:, None] + ar)[None, :, None, :]
    out = padded[torch.arange(T)[:, None, None, None], torch.arange(b)[None, :, None, None], rows, cols]
    return out.reshape(T, b, -1), offsets


class DatasetMismatchError(DatasetError):
    """The dataset does not fit the model (input size), or the selection is empty."""


@dataclass
class EncodedData:
    """A dataset split encoded as the bundle's input events, ready for the golden model or RTL."""
    on: "torch.Tensor"      # [T, B, N0] ON event counts
    off: "torch.Tensor"     # [T, B, N0] OFF event counts
    labels: "torch.Tensor"  # [B]
    encoding: dict          # the encoding spec that produced them


def load_encoded(bundle, dataset: str, split: str, limit: int | None, data_root=None,
                 encoding: str | None = None) -> EncodedData:
    """The first ``limit`` samples of a dataset split, encoded as ``bundle`` was trained to see them
    (its ``encoding``; the kind ``encoding``, if given, replaces it, with default parameters)."""
    import torch

    from bsnn.firmware_export.encoding import Encoder, encoding_of

    data = load_dataset(dataset, split, data_root).subset(limit)
    if data.input_size != bundle.input_size:
        raise DatasetMismatchError(f"dataset {dataset}: samples have {data.input_size} inputs but "
                                   f"the model expects {bundle.input_size}")
    spec = encoding_of(bundle, encoding)
    events = isinstance(data, EventDataset)
    if (spec.get("kind") == "events") != events:
        raise DatasetMismatchError(
            f"encoding {spec.get('kind')!r} does not fit dataset {dataset} ("
            + ("an event dataset: encoding 'events'" if events else
               "images: encoding rate, threshold, latency or poisson") + ")")
    encoder = Encoder(spec, bundle.time_steps)
    samples = data.images if hasattr(data, "images") else data.events
    on, off = encoder(samples)
    return EncodedData(on=on, off=off, labels=torch.as_tensor(data.labels), encoding=encoder.spec)
