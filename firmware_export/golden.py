"""The golden model: docs/semantics.md implemented once, in PyTorch.

The arithmetic lives in a few public functions, and training (``bsnn.training.model``: hardware
mode, traces, threshold initialisation, the fused training scan, the prediction) calls these same
functions, so Python has one definition of it. ``tests/reference_model.py`` is the deliberately
independent second reading (plain loops, no tensors).

* ``synaptic_input``: section 4, for all steps of a layer at once (dense layers; each layer kind's
  wiring, convolution and pooling included, is in ``spatial.py``);
* ``layer_step``: section 5, one time step of one layer for a batch; ``run_layer``: its time loop;
* ``count_first``: the per-neuron spike count and first-spike step a layer's spikes give;
* ``predicted_class``: section 6.

They run on integer tensors (``run_golden``: int64) and equally on float tensors holding integers
(training: float32, exact below 2^24), with gradients where training needs them: the leak's floor
division passes the gradient of ``x / 2^k`` (straight-through), the threshold comparison is a
``spike`` function of ``u - theta`` (training passes one whose forward value is ``heaviside`` and
whose backward pass is a surrogate gradient), and the reset carries no gradient.

``run_golden`` runs a bundle layer by layer, all steps of layer 1, then all steps of layer 2, ...:
the same values as the step-major order of section 3, since layer ``l`` at step ``t`` reads only the
spikes of layer ``l-1`` at step ``t``. Synaptic sums are float32 matrix products and convolutions
of integer operands, exact because every partial sum is an integer below 2^24 in magnitude
(``max_input_events`` and layer sizes are capped accordingly); all neuron arithmetic is int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .bundle import Bundle
from .errors import BSNNError
from .spatial import input_units, layer_wiring, synaptic_input  # noqa: F401  (training calls golden.synaptic_input)


class EventError(BSNNError, ValueError):
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
    """``sat_W(x)``: clamp to ``[-2^(W-1), 2^(W-1) - 1]`` (gradient 1 inside the range, 0 outside)."""
    return x.clamp(-(1 << (width - 1)), (1 << (width - 1)) - 1)


def leak(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``leak(x, k)`` of section 5: 0 if ``k == 0``, else ``x >> k`` (floor division by ``2^k``).

    On floating-point tensors (training) ``floor(x / 2^k)``, written as
    ``x / 2^k + (floor(x / 2^k) - x / 2^k)`` with the bracket detached: the gradient of
    ``x / 2^k`` passes straight through the floor."""
    if shift == 0:
        return torch.zeros_like(x)
    if not x.is_floating_point():
        return torch.bitwise_right_shift(x, shift)
    y = x / float(1 << shift)
    return y + (torch.floor(y) - y).detach()


def _leaked(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``x - leak(x, shift)``, and ``x`` itself when there is no leak (saves an operation)."""
    return x - leak(x, shift) if shift else x


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``x >= 0`` as 0/1 in ``x``'s dtype: the spike of section 5 is ``heaviside(u - theta)``.

    (A comparison written straight into a tensor of ``x``'s dtype is several times faster on CPU
    than a bool result converted afterwards.)"""
    return torch.ge(x, 0, out=torch.empty_like(x))


class NeuronState(NamedTuple):
    """What one layer carries from a step into the next, ``[B, N]`` each."""

    v: torch.Tensor        # potential
    c: torch.Tensor        # current (stays 0 in a layer without current state)
    fired: torch.Tensor    # 1 where the neuron has fired; kept by fire_once layers only (nothing else reads it)

    @classmethod
    def zeros(cls, like: torch.Tensor) -> "NeuronState":
        """The cleared state (section 3), in the shape, dtype and device of ``like``."""
        return cls(torch.zeros_like(like), torch.zeros_like(like), torch.zeros_like(like))


class Step(NamedTuple):
    """One step of one layer (``layer_step``), ``[B, N]`` each."""

    spikes: torch.Tensor          # 0/1 in the dtype of the state
    state: NeuronState            # carried into the next step (after the reset)
    u: torch.Tensor               # the potential compared with theta: saturated, before the reset
    v_exact: torch.Tensor         # the potential's exact sum, before saturation
    c_exact: torch.Tensor | None  # the current's exact sum, before saturation (None: no current state)
    drive: torch.Tensor           # what the potential integrates besides the bias: c, or the synaptic input


def layer_step(layer, v_width: int, c_width: int, state: NeuronState, syn: torch.Tensor,
               bias: torch.Tensor, theta: torch.Tensor, spike=heaviside) -> Step:
    """Section 5: one time step of one layer for a batch.

    ``layer``: anything with the fields ``current, leak_v, leak_c, reset, fire_once`` (a bundle's
    ``LayerSpec``, training's ``LayerConfig``); ``syn``: the synaptic input ``I`` of the step
    ``[B, N]``; ``bias``, ``theta``: ``[N]``. ``spike(u - theta)`` decides the spikes; any
    replacement must equal ``heaviside`` in value (training's adds a surrogate gradient). The
    reset and the fire-once bookkeeping use the spikes detached: they carry no gradient."""
    v, c, fired = state
    c_exact = None
    if layer.current:
        c_exact = _leaked(c, layer.leak_c) + syn
        c = saturate(c_exact, c_width)
        drive = c
    else:
        drive = syn
    v_exact = _leaked(v, layer.leak_v) + drive + bias    # one saturation of the exact sum
    u = saturate(v_exact, v_width)
    s = spike(u - theta)                                 # u >= theta
    if layer.fire_once:
        s = s * (1 - fired)
        fired = torch.maximum(fired, s.detach())
    held = s.detach()
    if layer.reset == "subtract":
        v = torch.addcmul(u, theta.detach(), held, value=-1)     # u - theta * held, one operation
    elif layer.reset == "zero":
        v = u * (1 - held)
    else:
        v = u
    return Step(s, NeuronState(v, c, fired), u, v_exact, c_exact, drive)


class LayerRun(NamedTuple):
    """One layer through all steps (``run_layer``)."""

    spikes: torch.Tensor    # [T, B, N], 0/1 in the dtype of ``syn``
    state: NeuronState      # after the last step
    recorded: dict          # name -> [T, B, N]: the ``Step`` fields asked for, per step


def run_layer(layer, v_width: int, c_width: int, syn: torch.Tensor, bias: torch.Tensor,
              theta: torch.Tensor, spike=heaviside, record=()) -> LayerRun:
    """One layer through all steps from the cleared state: ``layer_step`` for ``t = 0 .. T-1`` on
    the synaptic input ``syn`` ``[T, B, N]``. ``record`` names ``Step`` fields to keep per step."""
    state = NeuronState.zeros(syn[0])
    spikes, kept = [], {name: [] for name in record}
    for x in syn.unbind(0):
        step = layer_step(layer, v_width, c_width, state, x, bias, theta, spike)
        spikes.append(step.spikes)
        for name, seq in kept.items():
            seq.append(getattr(step, name))
        state = step.state
    return LayerRun(torch.stack(spikes), state, {name: torch.stack(seq) for name, seq in kept.items()})


def count_first(spikes: torch.Tensor):
    """Per neuron of ``spikes`` ``[T, B, N]`` (0/1 or bool): ``count``, the spikes in the inference
    (in the dtype a sum of ``spikes`` has), and ``first``, the step of the first one or -1 (int64):
    what section 5 accumulates for the readout."""
    T = spikes.shape[0]
    # latest = max_t (T - t) * spikes[t] = T - first (0 if the neuron never fired)
    steps = torch.arange(T, 0, -1, device=spikes.device).view(T, *([1] * (spikes.dim() - 1)))
    latest = (spikes * steps).amax(0).to(torch.int64)
    return spikes.sum(0), torch.where(latest > 0, T - latest, -1)


def predicted_class(rule: str, count: torch.Tensor, first: torch.Tensor, v_final: torch.Tensor,
                    time_steps: int, v_width: int) -> torch.Tensor:
    """Section 6: the best output neuron by the keys of readout ``rule``, ``[..., N_L]`` -> ``[...]``;
    the lowest index wins the last tie (``argmax`` returns the first maximum)."""
    v_key = v_final.to(torch.int64) + (1 << (v_width - 1))     # 0 .. 2^v_width - 1
    scale = 1 << v_width
    if rule == "potential":
        key = v_key
    elif rule == "spike_count":
        key = count.to(torch.int64) * scale + v_key
    elif rule == "first_spike":  # earlier is better, never-fired ranks last
        earliness = torch.where(first >= 0, time_steps - first, torch.zeros_like(first))
        key = earliness * scale + v_key
    else:
        raise ValueError(f"unknown readout {rule!r}")
    return torch.argmax(key, dim=-1)


def readout(bundle: Bundle, count: torch.Tensor, first: torch.Tensor, v_final: torch.Tensor) -> torch.Tensor:
    """``predicted_class`` with the readout rule, time steps and ``v_width`` of ``bundle``."""
    return predicted_class(bundle.readout, count, first, v_final, bundle.time_steps, bundle.v_width)


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


# Values per tensor of one batch, [T, B, neurons of the whole network]: 2^26 float32 values are
# 256 MiB, so the few such tensors a run keeps stay far inside a 24 GiB machine. The Fashion-MNIST
# conv model (T = 8, 47,306 neurons) took 15 GiB at 500 samples a batch and was killed.
BATCH_VALUES = 1 << 26


def batch_for_memory(time_steps: int, neurons: int, cap: int) -> int:
    """Samples per batch (at most ``cap``, at least 1) for a network of ``neurons`` (inputs and
    every layer's outputs together) over ``time_steps``: the batch of ``run_golden`` and of the
    training model's hardware mode, whose per-layer tensors are [T, B, N]."""
    return max(1, min(cap, BATCH_VALUES // max(1, time_steps * neurons)))


def network_values(bundle: Bundle) -> int:
    """Inputs plus every layer's outputs of ``bundle`` (what ``batch_for_memory`` sizes by)."""
    return bundle.input_size + sum(layer.size for layer in bundle.layers)


def golden_batches(bundle: Bundle, samples: int, inputs, cap: int = 500):
    """``run_golden`` over samples ``[0, samples)`` in batches of ``batch_for_memory`` (at most
    ``cap``): ``inputs(start, stop)`` gives the batch's ``(on, off)``; yields ``(start, stop,
    GoldenResult)``. The one batch loop of ``bsnn eval`` and of training's evaluation."""
    batch = batch_for_memory(bundle.time_steps, network_values(bundle), cap)
    for start in range(0, samples, batch):
        stop = min(start + batch, samples)
        on, off = inputs(start, stop)
        yield start, stop, run_golden(bundle, on, off)


@torch.no_grad()
def run_golden(bundle: Bundle, on: torch.Tensor, off: torch.Tensor | None = None,
               track_ranges: bool = False) -> GoldenResult:
    """Run ``bundle`` on input event counts ``on``/``off`` ([T, B, N_0], ON/OFF events per step).

    With ``track_ranges``, ``result.ranges[l]`` records the smallest and largest exact value of
    the synaptic input, the current and the potential sums before saturation, and how many
    neuron updates saturated (what an exporter needs to choose widths from data)."""
    on, off = check_input_counts(bundle, on, off)
    T, B = on.shape[0], on.shape[1]
    # Per input unit: the signed input (an OFF event adds -w: XNOR(0, w) = NOT w) and the event
    # count; with input_polarity "channels" OFF and ON events are separate units (section 10.2).
    x, events = input_units(bundle, on, off)            # [T, B, units]
    # Per layer kind (dense, conv2d, pool2d; sections 4 and 10): its synaptic input or pooling,
    # its SOPs, and its parameters per neuron (a conv2d layer's are per output channel).
    wiring = layer_wiring(bundle)
    spikes, v, c, events_per_layer, sops_per_layer, ranges = [], [], [], [], [], []
    for k, (layer, wire) in enumerate(zip(bundle.layers, wiring)):
        steps = x.reshape(T * B, -1), events.reshape(T * B, -1)   # every step at once
        events_per_layer.append(events.sum(dim=(0, 2)))
        sops_per_layer.append(wire.sops(steps[1]).reshape(T, B).sum(dim=0))
        if not layer.has_neurons:                     # pool2d: OR of each window, no state
            s = wire.pool(steps[0]).reshape(T, B, -1)
            spikes.append(s)
            v.append(torch.zeros(B, layer.size, dtype=torch.int64, device=x.device))
            c.append(torch.zeros(B, layer.size, dtype=torch.int64, device=x.device))
            if track_ranges:
                ranges.append(_Range().as_dict())
            x, events = s.to(torch.float32), s.to(torch.int64)
            continue
        bias = wire.per_neuron(bundle.bias[k]).to(x.device)
        theta = wire.per_neuron(bundle.threshold[k]).to(x.device)
        syn = wire.synaptic_input(steps[0]).reshape(T, B, -1)
        record = ("v_exact", "c_exact") if layer.current else ("v_exact",)
        run = run_layer(layer, bundle.v_width, bundle.c_width, syn, bias, theta,
                        record=record if track_ranges else ())
        if track_ranges:
            r = _Range()
            r.see("syn", syn)
            r.see("v", run.recorded["v_exact"], bundle.v_width)
            if layer.current:
                r.see("c", run.recorded["c_exact"], bundle.c_width)
            ranges.append(r.as_dict())
        spikes.append(run.spikes.to(torch.bool))
        v.append(run.state.v)
        c.append(run.state.c)
        x, events = run.spikes.to(torch.float32), run.spikes   # spikes are polarity-1 events
    count, first = count_first(spikes[-1])
    events_per_layer, sops_per_layer = torch.stack(events_per_layer), torch.stack(sops_per_layer)
    L = len(bundle.layers)
    hidden = [k for k in range(L - 1) if bundle.layers[k].has_neurons] or [L - 1]
    hidden_spikes = sum(spikes[k].sum(dim=(0, 2)).to(torch.int64) for k in hidden)
    hidden_neurons = sum(bundle.layers[k].size for k in hidden)
    return GoldenResult(spikes=spikes, v=v, c=c, count=count, first=first,
                        prediction=readout(bundle, count, first, v[-1]),
                        events_per_layer=events_per_layer, sops=sops_per_layer.sum(dim=0),
                        sops_per_layer=sops_per_layer, hidden_spikes=hidden_spikes,
                        hidden_neurons=hidden_neurons, ranges=ranges if track_ranges else None)
