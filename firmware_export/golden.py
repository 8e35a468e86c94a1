"""The golden model: docs/semantics.md implemented once, in PyTorch integer tensors.

Batched over samples, time-major. Synaptic sums use float32 matrix products and convolutions of
integer operands (each layer kind's wiring is in ``spatial.py``), exact because every partial sum
is an integer below 2^24 in magnitude (``max_input_events`` and layer sizes are capped
accordingly); all neuron arithmetic is int64.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .bundle import Bundle
from .spatial import input_units, layer_wiring


class EventError(ValueError):
    """Input events the semantics does not cover (one-line message)."""


@dataclass
class GoldenResult:
    spikes: list            # per layer: bool [T, B, N_l]
    v: list                 # per layer: int64 [B, N_l], final potentials (0 for pool2d layers)
    c: list                 # per layer: int64 [B, N_l], final currents (0 where no current state)
    count: torch.Tensor     # int64 [B, N_L], output spikes per neuron
    first: torch.Tensor     # int64 [B, N_L], step of first output spike, -1 if none
    prediction: torch.Tensor  # int64 [B]
    events_per_layer: torch.Tensor  # int64 [L, B], events into layer l (input events for l = 1)
    sops: torch.Tensor      # int64 [B], synaptic operations
    sops_per_layer: torch.Tensor  # int64 [L, B], synaptic operations of the events into layer l
    hidden_spikes: torch.Tensor  # int64 [B], spikes of hidden neuron layers (pool2d layers have
    hidden_neurons: int          # no neurons), of the output layer if there are none
    ranges: list | None = None   # per layer, with track_ranges: extremes of the exact sums

    @property
    def spikes_per_neuron(self) -> torch.Tensor:
        return self.hidden_spikes.double() / self.hidden_neurons


def saturate(x: torch.Tensor, width: int) -> torch.Tensor:
    return x.clamp(-(1 << (width - 1)), (1 << (width - 1)) - 1)


def leak(x: torch.Tensor, shift: int) -> torch.Tensor:
    return torch.zeros_like(x) if shift == 0 else torch.bitwise_right_shift(x, shift)


def check_input_counts(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None):
    """Validate event-count tensors [T, B, N_0]; return (on, off) as int64."""
    expected = (bundle.time_steps, bundle.input_size)
    for name, x in (("on", on), ("off", off)):
        if x is None:
            continue
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or (x.shape[0], x.shape[2]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise EventError(f"events: {name}: shape must be [T={expected[0]}, B, N0={expected[1]}], got {shape}")
        if x.is_floating_point() or x.is_complex():
            raise EventError(f"events: {name}: must be an integer tensor of event counts, got {x.dtype}")
        if x.numel() and int(x.min()) < 0:
            raise EventError(f"events: {name}: event counts must be >= 0")
    on = on.to(torch.int64)
    off = torch.zeros_like(on) if off is None else off.to(torch.int64)
    if off.shape != on.shape:
        raise EventError(f"events: off: shape {tuple(off.shape)} differs from on {tuple(on.shape)}")
    per_step = (on + off).sum(dim=2)
    if per_step.numel() and int(per_step.max()) > bundle.max_input_events:
        t, b = divmod(int(per_step.argmax()), per_step.shape[1])
        raise EventError(f"events: step {t} of sample {b}: {int(per_step.max())} events exceed "
                         f"max_input_events={bundle.max_input_events}")
    return on, off


class _Range:
    """Extremes of the exact (unsaturated) sums of one layer, and how often saturation acted."""

    def __init__(self):
        self.lo = {"syn": 0, "c": 0, "v": 0}
        self.hi = {"syn": 0, "c": 0, "v": 0}
        self.saturated = {"c": 0, "v": 0}

    def see(self, name, exact, width=None):
        if exact.numel():
            self.lo[name] = min(self.lo[name], int(exact.min()))
            self.hi[name] = max(self.hi[name], int(exact.max()))
        if width is not None:
            lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
            self.saturated[name] += int(((exact < lo) | (exact > hi)).sum())

    def as_dict(self):
        return {"min": dict(self.lo), "max": dict(self.hi), "saturated": dict(self.saturated)}


@torch.no_grad()
def run_golden(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None = None,
               track_ranges: bool = False) -> GoldenResult:
    """Run ``bundle`` on input event counts ``on``/``off`` ([T, B, N_0], ON/OFF events per step).

    With ``track_ranges``, ``result.ranges[l]`` records the smallest and largest exact value of
    the synaptic input, the current and the potential sums before saturation, and how many
    neuron updates saturated (what an exporter needs to choose widths from data)."""
    on, off = check_input_counts(bundle, on, off)
    T, B = on.shape[0], on.shape[1]
    L = len(bundle.layers)
    # Per layer kind (dense, conv2d, pool2d; docs/semantics.md sections 4 and 10): its synaptic
    # input or pooling, its SOPs, and its parameters per neuron (a conv2d layer's per channel).
    wiring = layer_wiring(bundle)
    bias = [wire.per_neuron(b) for wire, b in zip(wiring, bundle.bias)]
    theta = [wire.per_neuron(t) for wire, t in zip(wiring, bundle.threshold)]
    v = [torch.zeros(B, n, dtype=torch.int64) for n in bundle.sizes[1:]]
    c = [torch.zeros(B, n, dtype=torch.int64) for n in bundle.sizes[1:]]
    fired = [torch.zeros(B, n, dtype=torch.bool) for n in bundle.sizes[1:]]
    spikes = [torch.zeros(T, B, n, dtype=torch.bool) for n in bundle.sizes[1:]]
    n_out = bundle.layers[-1].size
    count = torch.zeros(B, n_out, dtype=torch.int64)
    first = torch.full((B, n_out), -1, dtype=torch.int64)
    events_per_layer = torch.zeros(L, B, dtype=torch.int64)
    sops_per_layer = torch.zeros(L, B, dtype=torch.int64)
    # Per input unit: the signed input (an OFF event adds -w: XNOR(0, w) = NOT w) and the event
    # count; with input_polarity "channels" OFF and ON events are separate units (section 10.2).
    net_input, input_events = input_units(bundle, on, off)
    ranges = [_Range() for _ in bundle.layers] if track_ranges else None
    for t in range(T):
        x, events = net_input[t], input_events[t]      # events: count per unit [B, units]
        for k, layer in enumerate(bundle.layers):
            events_per_layer[k] += events.sum(dim=1)
            sops_per_layer[k] += wiring[k].sops(events)
            if not layer.has_neurons:                    # pool2d: OR of each window, no state
                s = wiring[k].pool(x)
                spikes[k][t] = s
                x, events = s.to(torch.float32), s.to(torch.int64)
                continue
            syn = wiring[k].synaptic_input(x)
            if layer.current:
                c_exact = c[k] - leak(c[k], layer.leak_c) + syn
                c[k] = saturate(c_exact, bundle.c_width)
                drive = c[k]
            else:
                drive = syn
            v_exact = v[k] - leak(v[k], layer.leak_v) + drive + bias[k]
            if ranges is not None:
                ranges[k].see("syn", syn)
                ranges[k].see("v", v_exact, bundle.v_width)
                if layer.current:
                    ranges[k].see("c", c_exact, bundle.c_width)
            v[k] = saturate(v_exact, bundle.v_width)
            s = v[k] >= theta[k]
            if layer.fire_once:
                s &= ~fired[k]
            fired[k] |= s
            if layer.reset == "subtract":
                v[k] = torch.where(s, v[k] - theta[k], v[k])
            elif layer.reset == "zero":
                v[k] = torch.where(s, torch.zeros_like(v[k]), v[k])
            spikes[k][t] = s
            if k == L - 1:
                first = torch.where(s & (count == 0), torch.full_like(first, t), first)
                count += s.to(torch.int64)
            x, events = s.to(torch.float32), s.to(torch.int64)
    prediction = readout(bundle, count, first, v[-1])
    sops = sops_per_layer.sum(dim=0)
    hidden = [k for k in range(L - 1) if bundle.layers[k].has_neurons] or [L - 1]
    hidden_spikes = sum(spikes[k].sum(dim=(0, 2)).to(torch.int64) for k in hidden)
    hidden_neurons = sum(bundle.layers[k].size for k in hidden)
    return GoldenResult(spikes=spikes, v=v, c=c, count=count, first=first, prediction=prediction,
                        events_per_layer=events_per_layer, sops=sops,
                        sops_per_layer=sops_per_layer, hidden_spikes=hidden_spikes,
                        hidden_neurons=hidden_neurons,
                        ranges=[r.as_dict() for r in ranges] if ranges is not None else None)


def readout(bundle: Bundle, count: torch.Tensor, first: torch.Tensor, v_final: torch.Tensor) -> torch.Tensor:
    """docs/semantics.md section 6: lexicographic keys, lowest index wins the last tie."""
    v_key = v_final + (1 << (bundle.v_width - 1))           # 0 .. 2^v_width - 1
    scale = 1 << bundle.v_width
    if bundle.readout == "potential":
        key = v_key
    elif bundle.readout == "spike_count":
        key = count * scale + v_key
    else:  # first_spike: earlier is better, never-fired ranks last
        earliness = torch.where(first >= 0, bundle.time_steps - first, torch.zeros_like(first))
        key = earliness * scale + v_key
    return torch.argmax(key, dim=1)   # first maximal index on ties
