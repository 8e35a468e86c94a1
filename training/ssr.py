"""Sparse-firing regularization for the core's discrete-time neuron (docs/ssr.md).

Three penalties, each a function of the per-step *trace* of a layer in the training forward pass:

* ``mssr``  M-SSR (membrane-potential-aware): for every spike, the discrete integral (sum over
  the remaining steps of the window) of the excess over threshold of the *causal no-reset
  continuation* of the potential, ``sum_{k=0}^{r} relu(delta + k S)``;
* ``fssr``  F-SSR (firing-condition-aware): for every spike, the excess over threshold of the
  upper limit that continuation reaches in the window, ``delta + r relu(S)``;
* ``mem``   the membrane-potential baseline with reference voltage ``v_hat`` (a fraction of the
  threshold): ``sum_t relu(u[t] - v_hat theta)`` over every step, spiking or not.

with, for a spike of neuron ``i`` at step ``t_s``: ``u[t_s]`` the potential before reset,
``delta = u[t_s] - theta`` the overshoot (``>= 0``), ``S`` the slope (increment of ``v`` per step:
``c[t_s] + b`` for a current-based neuron, ``I[t_s] + b`` otherwise) and ``r = T - 1 - t_s + h`` the
steps left in the window (``h`` the ``horizon``, 0 by default). All terms are divided by the
neuron's threshold (detached), summed over steps and neurons of the hidden layers, divided by the
number of hidden neurons and averaged over the batch: ``R`` is "threshold-units per hidden
neuron per inference", and the loss is ``CE + gamma R``.

The spike indicator multiplies each spike's term: in the forward pass it is exactly 0/1 (the
values are those of the derivation), in the backward pass its surrogate gradient lets the
penalty also push the potential of a spiking neuron below threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["METHODS", "SSRConfig", "layer_penalty", "ssr_penalty", "mssr_terms", "fssr_terms",
           "mem_terms", "spike_step_stats"]

METHODS = ("none", "mssr", "fssr", "mem")


@dataclass
class SSRConfig:
    """``[ssr]`` section of a training config.

    method : "none", "mssr", "fssr" or "mem"
    gamma : strength (loss = CE + gamma * R)
    v_hat : reference voltage of the ``mem`` baseline, as a fraction of each neuron's threshold
    horizon : extra steps beyond the window the continuation is extrapolated to (``mssr``/``fssr``)
    layers : "hidden" (default) or "all" (output layer included, when it fires)
    local : the penalty of a layer trains only that layer's weights, bias and threshold; its
        gradient does not reach the spikes of the layer below (default; see docs/ssr.md 3.4)
    """

    method: str = "none"
    gamma: float = 0.0
    v_hat: float = 1.0
    horizon: int = 0
    layers: str = "hidden"
    local: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"ssr.method must be one of {METHODS}, got {self.method!r}")
        if self.layers not in ("hidden", "all"):
            raise ValueError(f"ssr.layers must be 'hidden' or 'all', got {self.layers!r}")
        if self.gamma < 0:
            raise ValueError(f"ssr.gamma must be >= 0, got {self.gamma}")
        if self.horizon < 0:
            raise ValueError(f"ssr.horizon must be >= 0, got {self.horizon}")

    @property
    def active(self) -> bool:
        return self.method != "none" and self.gamma > 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "SSRConfig":
        d = dict(d or {})
        return cls(method=str(d.get("method", "none")), gamma=float(d.get("gamma", 0.0)),
                   v_hat=float(d.get("v_hat", 1.0)), horizon=int(d.get("horizon", 0)),
                   layers=str(d.get("layers", "hidden")), local=bool(d.get("local", True)))


# ------------------------------------------------------------------ per-spike terms
def mssr_terms(u, slope, theta, spikes, horizon: int = 0):
    """M-SSR summed over steps: ``[B, N]`` (not yet divided by theta).

    ``u``, ``slope``, ``spikes``: ``[T, B, N]``; ``theta``: ``[N]`` (or broadcastable).
    """
    T = u.shape[0]
    delta = u - theta
    out = u.new_zeros(u.shape[1:])
    for t in range(T):
        r = T - 1 - t + horizon
        ks = torch.arange(r + 1, dtype=u.dtype, device=u.device).view(-1, 1, 1)
        area = torch.relu(delta[t].unsqueeze(0) + ks * slope[t].unsqueeze(0)).sum(0)
        out = out + spikes[t] * area
    return out


def fssr_terms(u, slope, theta, spikes, horizon: int = 0):
    """F-SSR summed over steps: ``[B, N]``: ``delta + r relu(S)`` per spike."""
    T = u.shape[0]
    r = (T - 1 + horizon - torch.arange(T, dtype=u.dtype, device=u.device)).view(T, 1, 1)
    upper = torch.relu(u - theta) + r * torch.relu(slope)
    return (spikes * upper).sum(0)


def mem_terms(u, theta, v_hat: float):
    """Membrane-potential baseline summed over steps: ``[B, N]``: ``sum_t relu(u - v_hat theta)``."""
    return torch.relu(u - v_hat * theta).sum(0)


def _shift_ste(x, k):
    return x - x / float(1 << k) if k else x


def local_trace(trace: dict) -> tuple:
    """``(u, slope, spikes)`` with the values of the trace but gradients only to the layer's own
    weights, bias and threshold: the synaptic input is recomputed from the detached input spikes,
    the potential's gradient path is the linear (leak as ``x / 2^k``, no saturation, detached
    reset) recursion, and the spikes get the model's triangular surrogate of that potential."""
    x, w = trace["input"], trace["w"]
    T, B = x.shape[0], x.shape[1]
    I = (x.reshape(T * B, -1).to(w.dtype) @ w).reshape(T, B, -1)
    bias = trace["bias"]
    c = I.new_zeros(I.shape[1:])
    v = I.new_zeros(I.shape[1:])
    us, slopes = [], []
    for t in range(T):
        if trace.get("current"):
            c = _shift_ste(c, trace.get("leak_c", 0)) + I[t]
            drive = c
        else:
            drive = I[t]
        v = _shift_ste(v, trace.get("leak_v", 0)) + drive + bias
        us.append(v)
        slopes.append(drive + bias)
    u_lin, s_lin = torch.stack(us), torch.stack(slopes)
    u = trace["u"].detach() + (u_lin - u_lin.detach())
    slope = trace["slope"].detach() + (s_lin - s_lin.detach())
    theta = trace["theta"]
    s = trace["spikes"].detach()
    d = u - theta
    sg = torch.clamp(1.0 - d.detach().abs() / trace["width"], min=0.0) / trace["width"]
    if trace.get("fire_once"):
        sg = sg * ((torch.cumsum(s, 0) - s) == 0)
    spikes = s + sg * (d - d.detach())
    return u, slope, spikes


def layer_penalty(trace: dict, cfg: SSRConfig) -> torch.Tensor:
    """Penalty of one layer per sample, ``[B]``, in threshold units summed over its neurons.

    ``trace``: ``{"u": [T,B,N], "slope": [T,B,N], "theta": [N], "spikes": [T,B,N]}`` as
    recorded by ``BSNN(..., trace=True)`` (pre-reset potential, slope, threshold as used in the
    forward pass with its straight-through gradient, and the spike indicator with its surrogate).
    """
    u, slope, theta, s = trace["u"], trace["slope"], trace["theta"], trace["spikes"]
    if cfg.local and "input" in trace:
        u, slope, s = local_trace(trace)
    if cfg.method == "mssr":
        per = mssr_terms(u, slope, theta, s, cfg.horizon)
    elif cfg.method == "fssr":
        per = fssr_terms(u, slope, theta, s, cfg.horizon)
    elif cfg.method == "mem":
        per = mem_terms(u, theta, cfg.v_hat)
    else:
        return u.new_zeros(u.shape[1])
    return (per / theta.detach()).sum(-1)


def ssr_penalty(traces: list, cfg: SSRConfig) -> torch.Tensor:
    """``R``: the penalty of the regularized layers per neuron, averaged over the batch.

    ``traces``: one trace dict per layer (hidden layers then the output layer).
    """
    if not traces:
        raise ValueError("ssr_penalty: no traces (run the model with trace=True)")
    layers = traces if cfg.layers == "all" or len(traces) == 1 else traces[:-1]
    total = sum(layer_penalty(tr, cfg) for tr in layers)
    neurons = sum(tr["u"].shape[-1] for tr in layers)
    return total.mean() / neurons


@torch.no_grad()
def spike_step_stats(traces: list) -> dict:
    """Where the hidden spikes are: fraction per step and fraction with zero overshoot."""
    out = {}
    for k, tr in enumerate(traces[:-1] if len(traces) > 1 else traces):
        s = tr["spikes"].detach() > 0
        n = max(1, int(s.sum()))
        per_step = [int(s[t].sum()) / n for t in range(s.shape[0])]
        exact = int((s & ((tr["u"] - tr["theta"]).detach() == 0)).sum()) / n
        out[f"layer{k + 1}"] = {"spikes": int(s.sum()), "per_step": per_step, "zero_overshoot": exact}
    return out
