"""Input encodings: how samples (uint8 images, sensor event streams) become the core's input
events, as integer count tensors ``on``, ``off`` [T, B, N0].

An encoding is data: a spec ``{"kind": ..., <every parameter of that kind>}`` recorded in the
bundle (docs/model-format.md, field ``encoding``) and checked by :func:`complete_encoding`. The
rules of each kind are written once in docs/semantics.md section 9; :class:`Encoder` is their one
implementation, used by training, ``bsnn eval``, ``bsnn board`` and the golden vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError

__all__ = ["ENCODINGS", "PARAMETERS", "LATE_EVENTS", "DEFAULT_ENCODING", "EncodingError",
           "complete_encoding", "Encoder", "encoding_of", "encode_images", "encode_events",
           "max_events_per_step"]

ENCODINGS = ("rate", "threshold", "latency", "poisson", "events")
LATE_EVENTS = ("last_step", "drop")   # events.late_events: what happens to events after the window
DEFAULT_ENCODING = {"kind": "rate"}


class EncodingError(InputError):
    """An encoding spec is invalid; ``field`` names the parameter (``kind``, ``window_us``, ...)."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(f"encoding{'.' + field if field else ''}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class _Int:
    default: int | None
    lo: int
    hi: int
    nullable: bool = False   # JSON null allowed (meaning "no limit")

    def problem(self, value):
        if value is None and self.nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return f"must be an integer{' or null' if self.nullable else ''}, got {value!r}"
        if not self.lo <= value <= self.hi:
            return f"must be in [{self.lo}, {self.hi}], got {value}"
        return None


@dataclass(frozen=True)
class _Choice:
    default: str
    choices: tuple

    def problem(self, value):
        if value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        return None


# Every parameter of every kind, with its default (what a spec that leaves it out means).
PARAMETERS = {
    "rate": {},
    "threshold": {"threshold": _Int(128, 1, 255)},
    "latency": {"min_value": _Int(1, 0, 255)},
    "poisson": {"seed": _Int(0, 0, (1 << 63) - 1)},
    "events": {
        "window_us": _Int(300_000, 1, (1 << 32) - 1),
        "late_events": _Choice("last_step", LATE_EVENTS),
        "max_per_pixel": _Int(None, 1, 65535, nullable=True),
        "width": _Int(34, 1, 65535),
        "height": _Int(34, 1, 65535),
    },
}


def complete_encoding(spec, require_all: bool = False) -> dict:
    """The checked, complete form of ``spec``: ``kind`` first, then every parameter of that kind
    in the order of :data:`PARAMETERS`, defaults filled in (or, with ``require_all``, a missing
    parameter refused). Raises :class:`EncodingError` naming the first bad field."""
    if not isinstance(spec, Mapping):
        raise EncodingError(None, f"must be an object with a kind, got {spec!r}")
    kind = spec.get("kind")
    if kind not in ENCODINGS:
        raise EncodingError("kind", f"must be one of {', '.join(ENCODINGS)}, got {kind!r}")
    params = PARAMETERS[kind]
    unknown = sorted(set(spec) - {"kind"} - set(params))
    if unknown:
        known = ", ".join(params) or "none"
        raise EncodingError(unknown[0], f"unknown parameter of {kind} (its parameters: {known})")
    out = {"kind": kind}
    for name, rule in params.items():
        if name not in spec:
            if require_all:
                raise EncodingError(name, "missing")
            out[name] = rule.default
            continue
        problem = rule.problem(spec[name])
        if problem:
            raise EncodingError(name, problem)
        value = spec[name]
        out[name] = int(value) if isinstance(value, np.integer) else value
    return out


# ---------------------------------------------------------------------------------------------
# The rules (docs/semantics.md section 9).

def _as_pixels(images) -> torch.Tensor:
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images, copy=True))
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    return x.reshape(x.shape[0], -1).to(torch.int64)


def _default(kind, name):
    return PARAMETERS[kind][name].default


def encode_images(images, time_steps: int, kind: str = "rate", *,
                  threshold: int = _default("threshold", "threshold"),
                  min_value: int = _default("latency", "min_value"),
                  generator: torch.Generator | None = None):
    """Encode uint8 images ``[B, ...]`` (pixels flattened row-major) into ``(on, off)`` int64
    counts ``[T, B, N0]``; ``off`` is all zeros. Prefer :class:`Encoder`, which takes the spec."""
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    x = _as_pixels(images)  # [B, N]
    T = time_steps
    t = torch.arange(T, dtype=torch.int64).view(T, 1, 1)
    if kind == "rate":
        q = (2 * x * T + 255) // (2 * 255)  # round(x T / 255), halves up, in integers
        on = ((t + 1) * q // T) - (t * q // T)
    elif kind == "threshold":
        on = (x >= threshold).to(torch.int64).unsqueeze(0).expand(T, -1, -1)
    elif kind == "latency":
        step = ((255 - x) * T) // 256
        on = ((step.unsqueeze(0) == t) & (x >= min_value).unsqueeze(0)).to(torch.int64)
    elif kind == "poisson":
        p = x.to(torch.float32) / 255.0
        u = torch.rand((T,) + tuple(p.shape), generator=generator)
        on = (u < p.unsqueeze(0)).to(torch.int64)
    else:
        raise ValueError(f"unknown image encoding {kind!r}; choose rate, threshold, latency or poisson")
    on = on.contiguous()
    return on, torch.zeros_like(on)


def encode_events(samples, time_steps: int, *, window_us: int = _default("events", "window_us"),
                  late_events: str = _default("events", "late_events"),
                  max_per_pixel: int | None = _default("events", "max_per_pixel"),
                  width: int = _default("events", "width"), height: int = _default("events", "height")):
    """Bin event samples (structured arrays with fields x, y, p, ts) into ``(on, off)`` counts
    ``[T, B, width * height]``. Prefer :class:`Encoder`, which takes the spec."""
    if late_events not in LATE_EVENTS:
        raise ValueError(f"late_events must be one of {LATE_EVENTS}, got {late_events!r}")
    T, n = time_steps, width * height
    on = np.zeros((T, len(samples), n), dtype=np.int64)
    off = np.zeros_like(on)
    for b, ev in enumerate(samples):
        ts = ev["ts"].astype(np.int64)
        x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
        if ts.size and ts.min() < 0:
            raise ValueError(f"sample {b}: negative timestamp {int(ts.min())}")
        if x.size and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height):
            raise ValueError(f"sample {b}: event coordinate outside the {width}x{height} sensor")
        step = ts * T // window_us
        keep = step < T if late_events == "drop" else np.ones(step.shape, dtype=bool)
        step = np.minimum(step, T - 1)
        idx = y * width + x
        pol = ev["p"].astype(bool)
        np.add.at(on[:, b, :], (step[keep & pol], idx[keep & pol]), 1)
        np.add.at(off[:, b, :], (step[keep & ~pol], idx[keep & ~pol]), 1)
    if max_per_pixel is not None:
        np.minimum(on, max_per_pixel, out=on)
        np.minimum(off, max_per_pixel, out=off)
    return torch.from_numpy(on), torch.from_numpy(off)


def max_events_per_step(on: torch.Tensor, off: torch.Tensor | None = None) -> int:
    """Largest number of input events one step of one sample carries."""
    total = on if off is None else on + off
    return int(total.sum(dim=2).max()) if total.numel() else 0


class Encoder:
    """The encoder a spec describes: ``Encoder(spec, T)(samples) -> (on, off)``.

    ``spec`` is completed and checked (:func:`complete_encoding`; :class:`EncodingError` if bad).
    ``poisson`` draws from ``generator`` when one is given (training: fresh draws every batch),
    else from a generator seeded with the spec's ``seed`` at each call.
    """

    def __init__(self, spec, time_steps: int):
        self.spec = complete_encoding(spec)
        self.kind, self.time_steps = self.spec["kind"], int(time_steps)
        if self.time_steps < 1:
            raise ValueError(f"time_steps must be >= 1, got {time_steps}")

    @property
    def params(self) -> dict:
        return {k: v for k, v in self.spec.items() if k != "kind"}

    def __call__(self, samples, generator: torch.Generator | None = None):
        if self.kind == "events":
            return encode_events(samples, self.time_steps, **self.params)
        if self.kind == "poisson" and generator is None:
            generator = torch.Generator().manual_seed(self.spec["seed"])
        return encode_images(samples, self.time_steps, self.kind, generator=generator,
                             **{k: v for k, v in self.params.items() if k != "seed"})

    def max_input_events(self, input_size: int) -> int | None:
        """The most events one step can carry whatever the sample (images: one per pixel;
        events: only bounded with ``max_per_pixel``, else None)."""
        if self.kind != "events":
            return int(input_size)
        cap = self.spec["max_per_pixel"]
        return None if cap is None else int(2 * cap * input_size)


def encoding_of(bundle, override: str | None = None) -> dict:
    """The complete input encoding of ``bundle``; ``override`` (a kind) replaces it by that
    kind with its default parameters (``bsnn eval --encoding``)."""
    return complete_encoding({"kind": override} if override else bundle.encoding)
