"""Loading training checkpoints without running code from them.

A checkpoint (``bsnn.training.train`` writes ``last.pt`` / ``best.pt``) holds only tensors and
plain data: the model and optimizer state dicts, the scheduler state (numbers and lists), the
config (the TOML as dicts, lists, strings and numbers), the history (dicts of numbers), and the
RNG state (a byte tensor). So it loads with ``torch.load(weights_only=True)``, which refuses any
other object instead of unpickling it: a file whose pickle would call a function (and so run
code) is refused with a one-line :class:`CheckpointError`. No extra globals are allowed.
"""
from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import torch

from bsnn.firmware_export.errors import InputError

__all__ = ["CheckpointError", "load_checkpoint", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("model", "config", "input_size", "max_input_events")


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
    if missing:
        raise CheckpointError(f"{path}: not a bsnn training checkpoint (no {', '.join(missing)})")
    return ck
