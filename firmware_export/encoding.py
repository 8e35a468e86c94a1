"""Encoders turning samples into the core's input events: integer count tensors ``on``, ``off`` [T, B, N0].

Images use polarity ON only (``off`` is all zeros). Each pixel emits at most one event per step,
so an image step carries at most ``N0`` events.

* ``rate`` (deterministic rate): pixel value x in 0..255 is quantised to ``q = round(x * T / 255)``
  spikes, spread evenly over the T steps (spike at step t iff ``floor((t+1) q / T) > floor(t q / T)``).
* ``threshold``: one spike at every step for each pixel with ``x >= threshold`` (binary image).
* ``latency`` (time-to-first-spike): one spike at step ``floor((255 - x) * T / 256)`` for each pixel
  with ``x >= min_value`` (brighter fires earlier).
* ``poisson``: Bernoulli(x / 255) per step, from a seeded generator (stochastic rate coding).
* ``events`` (N-MNIST): events binned into T equal windows of ``window_us`` microseconds, input index
  ``y * 34 + x``, ON events counted in ``on`` and OFF events in ``off``; duplicates count (a pixel
  may send several events in a step) unless ``max_per_pixel`` caps the count per (pixel, polarity,
  step). The most events a step may carry is then reported by :func:`max_events_per_step`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ENCODINGS", "DEFAULT_ENCODING", "encode_images", "encode_events", "max_events_per_step",
           "Encoder", "encoding_of"]

ENCODINGS = ("rate", "threshold", "latency", "poisson", "events")
DEFAULT_ENCODING = {"kind": "rate"}


def _as_uint8_tensor(images) -> torch.Tensor:
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images, copy=True))
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    return x.reshape(x.shape[0], -1).to(torch.int64)


def encode_images(
    images,
    time_steps: int,
    kind: str = "rate",
    *,
    threshold: int = 128,
    min_value: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode uint8 images ``[B, ...]`` into ``(on, off)`` int64 count tensors ``[T, B, N0]``."""
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    x = _as_uint8_tensor(images)  # [B, N]
    T = time_steps
    t = torch.arange(T, dtype=torch.int64).view(T, 1, 1)
    if kind == "rate":
        q = (x * T * 2 + 255) // (2 * 255)  # round(x * T / 255), halves up
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


def encode_events(
    samples,
    time_steps: int,
    *,
    window_us: int = 300_000,
    side: int = 34,
    max_per_pixel: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin event samples (structured arrays x, y, p, ts) into ``(on, off)`` counts ``[T, B, side^2]``.

    Step of an event: ``min(ts * T // window_us, T - 1)`` (events after the window go to the last step).
    """
    T, n = time_steps, side * side
    on = np.zeros((T, len(samples), n), dtype=np.int64)
    off = np.zeros_like(on)
    for b, ev in enumerate(samples):
        step = np.minimum(ev["ts"].astype(np.int64) * T // window_us, T - 1)
        idx = ev["y"].astype(np.int64) * side + ev["x"].astype(np.int64)
        pol = ev["p"].astype(bool)
        np.add.at(on[:, b, :], (step[pol], idx[pol]), 1)
        np.add.at(off[:, b, :], (step[~pol], idx[~pol]), 1)
    if max_per_pixel is not None:
        np.minimum(on, max_per_pixel, out=on)
        np.minimum(off, max_per_pixel, out=off)
    return torch.from_numpy(on), torch.from_numpy(off)


def max_events_per_step(on: torch.Tensor, off: torch.Tensor | None = None) -> int:
    """Largest number of input events one step of one sample carries."""
    total = on if off is None else on + off
    return int(total.sum(dim=2).max()) if total.numel() else 0


class Encoder:
    """Configured encoder: ``Encoder(kind, T, **options)(batch) -> (on, off)``."""

    def __init__(self, kind: str, time_steps: int, **options):
        if kind not in ENCODINGS:
            raise ValueError(f"unknown encoding {kind!r}; choose one of {ENCODINGS}")
        self.kind, self.time_steps, self.options = kind, int(time_steps), dict(options)

    def __call__(self, samples, generator: torch.Generator | None = None):
        if self.kind == "events":
            keys = ("window_us", "max_per_pixel")
            return encode_events(samples, self.time_steps, **{k: self.options[k] for k in keys if k in self.options})
        keys = ("threshold", "min_value")
        return encode_images(
            samples, self.time_steps, self.kind, generator=generator,
            **{k: self.options[k] for k in keys if k in self.options},
        )

    def max_input_events(self, input_size: int) -> int:
        """An upper bound of events per step for this encoder (images: one per pixel)."""
        if self.kind == "events":
            cap = self.options.get("max_per_pixel")
            if cap is None:
                return int(self.options.get("max_input_events", 4 * input_size))
            return int(2 * cap * input_size)
        return int(input_size)


def encoding_of(bundle, override: str | None = None) -> dict:
    """The input encoding recorded by training in ``metadata.encoding`` (docs/model-format.md)."""
    from bsnn.firmware_export.bundle import BundleError

    spec = dict(bundle.metadata.get("encoding") or DEFAULT_ENCODING)
    if override:
        spec = {"kind": override}
    if not isinstance(spec.get("kind"), str):
        raise BundleError("manifest.json: metadata.encoding.kind: must be a string")
    return spec
