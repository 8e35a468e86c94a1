"""Input events as lists (what a stream carries) and as count tensors (what the golden model takes)."""
from __future__ import annotations

import numpy as np
import torch

from .bundle import Bundle
from .golden import EventError

# One sample: a list of T steps, each a list of (index, polarity) events.
EventList = list[list[tuple[int, int]]]


def events_from_counts(on: torch.Tensor, off: torch.Tensor | None = None, sample: int = 0,
                       rng: np.random.Generator | None = None) -> EventList:
    """Expand the counts of one sample into events: ascending index, ON before OFF, or shuffled
    within each step when ``rng`` is given (the semantics make the order irrelevant)."""
    on_s = on[:, sample].to(torch.int64).numpy()
    off_s = None if off is None else off[:, sample].to(torch.int64).numpy()
    steps = []
    for t in range(on_s.shape[0]):
        active = on_s[t] if off_s is None else on_s[t] + off_s[t]
        ev = []
        for idx in np.flatnonzero(active):
            ev.extend([(int(idx), 1)] * int(on_s[t, idx]))
            if off_s is not None:
                ev.extend([(int(idx), 0)] * int(off_s[t, idx]))
        if rng is not None:
            rng.shuffle(ev)
        steps.append(ev)
    return steps


def counts_from_events(bundle: Bundle, samples: list[EventList]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of events_from_counts for a batch; validates every event against the bundle."""
    T, n0 = bundle.time_steps, bundle.input_size
    on = torch.zeros(T, len(samples), n0, dtype=torch.int64)
    off = torch.zeros_like(on)
    for b, steps in enumerate(samples):
        if len(steps) != T:
            raise EventError(f"events: sample {b}: has {len(steps)} steps, the model runs T={T}")
        for t, ev in enumerate(steps):
            if len(ev) > bundle.max_input_events:
                raise EventError(f"events: step {t} of sample {b}: {len(ev)} events exceed "
                                 f"max_input_events={bundle.max_input_events}")
            for idx, pol in ev:
                if not 0 <= idx < n0:
                    raise EventError(f"events: step {t} of sample {b}: index {idx} out of range [0, {n0})")
                if pol not in (0, 1):
                    raise EventError(f"events: step {t} of sample {b}: polarity {pol} is not 0 or 1")
                (on if pol else off)[t, b, idx] += 1
    return on, off


def random_counts(bundle: Bundle, batch: int, rng: np.random.Generator, density: float | None = None,
                  polarity: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random input event counts within the bundle's limits (including empty steps)."""
    T, n0 = bundle.time_steps, bundle.input_size
    if density is None:
        density = float(rng.uniform(0.05, 0.6))
    on = (rng.random((T, batch, n0)) < density).astype(np.int64)
    off = ((rng.random((T, batch, n0)) < density / 2).astype(np.int64) if polarity
           else np.zeros_like(on))
    # Respect max_input_events per step by thinning the busiest steps.
    for t in range(T):
        for b in range(batch):
            while on[t, b].sum() + off[t, b].sum() > bundle.max_input_events:
                arr = on if on[t, b].sum() >= off[t, b].sum() else off
                arr[t, b, int(rng.choice(np.flatnonzero(arr[t, b])))] -= 1
    return torch.from_numpy(on), torch.from_numpy(off)
