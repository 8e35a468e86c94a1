"""Loading training checkpoints without running code from them.

A checkpoint (``bsnn.training.train`` writes ``last.pt`` / ``best.pt``) holds only tensors and
plain data: the model and optimizer state dicts, the scheduler state (numbers and lists), the
config (the TOML as dicts, lists, strings and numbers), the history (dicts of numbers), and the
RNG state (a byte tensor). So it loads with ``torch.load(weights_only=True)``, which refuses any
other object instead of unpickling it: a file whose pickle would call a function (and so run
code) is refused with a one-line :class:`CheckpointError`. No extra globals are allowed.

A **compact** checkpoint (:func:`compact_checkpoint`, ``bsnn compact``) is the export-only form
of one, small enough to commit: each binary weight tensor as its sign bits (the hardware's sign,
``w >= 0``) packed eight to a byte with the tensor's mean magnitude, the rest of the model state
as it is, and no optimizer, scheduler or RNG state. :func:`load_checkpoint` expands it back into
a model state whose latent weights are ``+-`` that magnitude (and marks it ``from_compact``), so it
exports to the same bundle bit for bit and starts a fine-tuning run (``init_from``); it cannot
resume one.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import stat
from pathlib import Path

import numpy as np
import torch

from bsnn.firmware_export.errors import InputError

__all__ = ["CheckpointError", "load_checkpoint", "compact_checkpoint", "REQUIRED_KEYS",
           "COMPACT_FORMAT"]

REQUIRED_KEYS = ("model", "config", "input_size", "max_input_events")
COMPACT_FORMAT = 1
# What a compact checkpoint keeps besides the model: enough to rebuild and describe the network.
_COMPACT_KEEPS = ("config", "input_size", "max_input_events", "history", "epoch")
_BINARY_WEIGHT = re.compile(r"weights\.\d+")   # the latent weights of BSNN's ParameterList


class CheckpointError(InputError):
    """A checkpoint file cannot be used (one line, naming the file)."""


def load_checkpoint(path, map_location="cpu", required=REQUIRED_KEYS) -> dict:
    """The checkpoint dict of ``path``, loaded with ``weights_only=True``; raises
    :class:`CheckpointError` for anything but a regular file holding such a checkpoint."""
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO must not hang the open; it is refused right after.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: checkpoint cannot be opened ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{path}: not a checkpoint file "
                                  f"({'a folder' if stat.S_ISDIR(mode) else 'a special file'})")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = None
            ck = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(f"{path}: refused: the checkpoint holds objects other than tensors "
                                  "and plain data, and loading it could run code") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable or another format)") from None
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, AttributeError,
            TypeError, MemoryError, OverflowError):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable, truncated or another "
                              "format)") from None
    finally:
        if fd is not None:
            os.close(fd)
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: not a bsnn training checkpoint (holds a {type(ck).__name__})")
    missing = [k for k in required if k not in ck]
    if missing and "compact" in ck:
        raise CheckpointError(f"{path}: a compact checkpoint (no {', '.join(missing)}): it exports and "
                              "starts a fine-tuning run (init_from) but cannot resume one")
    if missing:
        raise CheckpointError(f"{path}: not a bsnn training checkpoint (no {', '.join(missing)})")
    return _expand_compact(ck, path) if "compact" in ck else ck


def compact_checkpoint(ck: dict) -> dict:
    """The compact (export-only) form of the checkpoint dict ``ck``: see the module docstring."""
    model, signs = {}, {}
    for name, value in ck["model"].items():
        if not _BINARY_WEIGHT.fullmatch(name):
            model[name] = value
            continue
        w = value.detach().float().cpu().flatten()
        magnitude = float(w.abs().mean()) if w.numel() else 0.0
        packed = torch.from_numpy(np.packbits((w >= 0).numpy()))   # first weight in the MSB
        signs[name] = {"bits": packed, "shape": list(value.shape),
                       "magnitude": magnitude if magnitude > 0 else 1.0}
    out = {k: ck[k] for k in _COMPACT_KEEPS if k in ck}
    out.update(model=model, compact={"format": COMPACT_FORMAT, "signs": signs})
    return out


def _expand_compact(ck: dict, path) -> dict:
    """``ck`` with its sign bits unpacked into latent weights; one-line errors for a malformed one."""
    def bad(why: str):
        return CheckpointError(f"{path}: malformed compact checkpoint ({why})")

    spec = ck["compact"]
    if not isinstance(spec, dict) or spec.get("format") != COMPACT_FORMAT:
        raise bad(f"format {spec.get('format') if isinstance(spec, dict) else spec!r}, expected "
                  f"{COMPACT_FORMAT}")
    if not isinstance(spec.get("signs"), dict) or not isinstance(ck["model"], dict):
        raise bad("no sign table or no model state")
    model = dict(ck["model"])
    for name, entry in spec["signs"].items():
        if not isinstance(name, str) or not _BINARY_WEIGHT.fullmatch(name) or name in model:
            raise bad(f"{name!r} is not a binary weight tensor, or appears twice")
        if not isinstance(entry, dict):
            raise bad(f"{name}: not a sign entry")
        bits, shape, magnitude = entry.get("bits"), entry.get("shape"), entry.get("magnitude")
        if not (isinstance(shape, list) and all(isinstance(d, int) and 0 <= d < 1 << 31 for d in shape)):
            raise bad(f"{name}: shape {shape!r}")
        n = math.prod(shape)
        if not (isinstance(bits, torch.Tensor) and bits.dtype == torch.uint8 and bits.dim() == 1
                and bits.numel() == -(-n // 8)):
            raise bad(f"{name}: the sign bits do not hold {n} weights")
        if not (isinstance(magnitude, float) and math.isfinite(magnitude) and magnitude > 0):
            raise bad(f"{name}: magnitude {magnitude!r}")
        positive = torch.from_numpy(np.unpackbits(bits.numpy(), count=n).astype(bool)).view(shape)
        model[name] = torch.where(positive, magnitude, -magnitude).float()
    out = dict(ck, model=model, from_compact=True)
    del out["compact"]
    return out
