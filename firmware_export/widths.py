"""Choosing state widths from data: how wide must v and c be so that the training set never
saturates them (docs/semantics.md: saturation, never wrap-around, beyond the chosen widths)."""
from __future__ import annotations

from dataclasses import replace

import torch

from .bundle import MAX_WIDTH, Bundle
from .golden import batch_for_memory, network_values, run_golden


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi] (at least 2)."""
    width = 2
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def _ranges_in_batches(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None, batch: int) -> list[dict]:
    """``run_golden(..., track_ranges=True).ranges`` over all samples, in batches that fit memory:
    extremes merged, saturation counts summed."""
    batch = batch_for_memory(bundle.time_steps, network_values(bundle), batch)
    merged = None
    for start in range(0, on.shape[1], batch):
        sl = slice(start, start + batch)
        ranges = run_golden(bundle, on[:, sl], None if off is None else off[:, sl], track_ranges=True).ranges
        if merged is None:
            merged = ranges
            continue
        for m, r in zip(merged, ranges):
            for key in ("syn", "c", "v"):
                m["min"][key] = min(m["min"][key], r["min"][key])
                m["max"][key] = max(m["max"][key], r["max"][key])
            for key in m["saturated"]:
                m["saturated"][key] += r["saturated"][key]
    return merged


def measure_ranges(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None = None,
                   batch: int = 1000) -> list[dict]:
    """Extremes of the exact sums per layer on these inputs, measured with 32-bit states so that
    nothing saturates while measuring."""
    return _ranges_in_batches(replace(bundle, v_width=MAX_WIDTH, c_width=MAX_WIDTH), on, off, batch)


def width_report(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None = None) -> dict:
    """The widths the data needs, against the bundle's, and how often the bundle saturates."""
    ranges = measure_ranges(bundle, on, off)
    v_lo = min(r["min"]["v"] for r in ranges)
    v_hi = max([r["max"]["v"] for r in ranges] + [int(t.max()) for t in bundle.threshold if t.size])
    c_lo = min(r["min"]["c"] for r in ranges)
    c_hi = max(r["max"]["c"] for r in ranges)
    saturations = _ranges_in_batches(bundle, on, off, 1000)
    return {
        "samples": int(on.shape[1]),
        "layers": [{"layer": k + 1, "syn": [r["min"]["syn"], r["max"]["syn"]],
                    "v": [r["min"]["v"], r["max"]["v"]], "c": [r["min"]["c"], r["max"]["c"]],
                    "saturated_updates_at_bundle_widths": saturations[k]["saturated"]}
                   for k, r in enumerate(ranges)],
        "v_width_needed": signed_bits(v_lo, v_hi),
        "c_width_needed": signed_bits(c_lo, c_hi),
        "v_width": bundle.v_width,
        "c_width": bundle.c_width,
    }
