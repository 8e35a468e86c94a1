"""Float reference simulation of a NIR chain: the importer's discretisation, without quantisation.

Comparing it with the source framework (snnTorch) checks our reading of NIR's semantics;
comparing the compiled bundle (golden model) with it measures what binarising and integer
quantisation cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch
import torch.nn.functional as F

from .graph import dynamics, parse_chain, read_nir, resolve_dt


@dataclass
class FloatResult:
    spikes: list                 # per layer: float64 [T, B, N_l] (0/1)
    v: torch.Tensor              # float64 [B, N_L], final potentials of the last layer
    count: torch.Tensor          # int64 [B, N_L]
    first: torch.Tensor          # int64 [B, N_L], -1 if none
    prediction: torch.Tensor     # int64 [B]


def float_readout(readout: str, count, first, v, time_steps: int) -> torch.Tensor:
    """docs/semantics.md section 6 with float potentials (same keys, lowest index wins ties)."""
    if readout == "potential":
        return torch.argmax(v, dim=1)
    if readout == "spike_count":
        key = count
    elif readout == "first_spike":
        key = torch.where(first >= 0, time_steps - first, torch.zeros_like(first))
    else:
        raise ValueError(f"readout: unknown rule {readout!r}")
    best = key == key.max(dim=1, keepdim=True).values
    return torch.argmax(torch.where(best, v, torch.full_like(v, -torch.inf)), dim=1)


def _pool_sums(x: torch.Tensor, layer) -> torch.Tensor:
    """Window sums of ``x`` ``[B, C*H*W]`` over ``layer``'s windows (zero padding), ``[B, C*Ho*Wo]``."""
    maps = x.reshape(x.shape[0], *layer.in_shape)
    ph, pw = layer.padding
    maps = F.pad(maps, (pw, pw, ph, ph))
    return F.avg_pool2d(maps, layer.kernel, layer.stride, divisor_override=1).reshape(x.shape[0], -1)


@torch.no_grad()
def simulate_nir(graph_or_path, on: torch.Tensor, off: torch.Tensor | None = None, *, dt: float | None = None,
                 discretization: str = "euler", reset="auto", readout: str = "spike_count",
                 input_polarity: str = "xnor") -> FloatResult:
    """Run the NIR chain in float64 on input counts ``on``/``off`` ([T, B, N_0]; the input is
    ``on - off``, or with ``input_polarity="channels"`` the two channels ``off``, ``on``)."""
    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_nir(graph_or_path)
    layers = parse_chain(graph).layers
    dt, _ = resolve_dt(graph, dt)
    off_ = torch.zeros_like(on) if off is None else off
    if input_polarity == "channels":
        x_all = torch.cat([off_, on], dim=2).to(torch.float64)
    else:
        x_all = on.to(torch.float64) - off_.to(torch.float64)
    T, B = x_all.shape[0], x_all.shape[1]
    dyn = [None if layer.kind == "pool2d" else dynamics(layer, dt, discretization, reset) for layer in layers]
    t64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    params = []
    for layer, d in zip(layers, dyn):
        if d is None:
            thr = np.asarray(layer.node.threshold, dtype=np.float64).reshape(-1)
            pool = graph.nodes[layer.synapse]
            scale = 1.0 if isinstance(pool, nir.SumPool2d) else 1.0 / (layer.kernel[0] * layer.kernel[1])
            params.append(dict(theta=t64(thr), scale=scale))
            continue
        params.append(dict(w=t64(layer.weight) if layer.kind == "conv2d" else t64(layer.weight).T.contiguous(),
                           b=t64(layer.bias), beta=t64(d.beta),
                           alpha=None if d.alpha is None else t64(d.alpha), g_in=t64(d.g_in),
                           g_cv=None if d.g_cv is None else t64(d.g_cv), drive=t64(d.drive),
                           theta=t64(d.theta)))
    sizes = [layer.size for layer in layers]
    v = [torch.zeros(B, n, dtype=torch.float64) for n in sizes]
    c = [torch.zeros(B, n, dtype=torch.float64) for n in sizes]
    fired = [torch.zeros(B, n, dtype=torch.bool) for n in sizes]
    spikes = [torch.zeros(T, B, n, dtype=torch.float64) for n in sizes]
    count = torch.zeros(B, sizes[-1], dtype=torch.int64)
    first = torch.full((B, sizes[-1]), -1, dtype=torch.int64)
    for t in range(T):
        x = x_all[t]
        for k, (layer, d, p) in enumerate(zip(layers, dyn, params)):
            if d is None:             # SumPool2d / AvgPool2d, then Threshold (NIR: fires on > t)
                s = _pool_sums(x, layer) * p["scale"] > p["theta"]
                spikes[k][t] = s.to(torch.float64)
                x = s.to(torch.float64)
                continue
            if layer.kind == "conv2d":
                maps = x.reshape(B, *layer.in_shape)
                syn = F.conv2d(maps, p["w"], stride=layer.stride, padding=layer.padding).reshape(B, -1) + p["b"]
            else:
                syn = x @ p["w"] + p["b"]
            if d.current:
                c[k] = p["alpha"] * c[k] + p["g_in"] * syn
                v[k] = p["beta"] * v[k] + p["drive"] + p["g_cv"] * c[k]
            else:
                v[k] = p["beta"] * v[k] + p["drive"] + p["g_in"] * syn
            s = v[k] > p["theta"]
            if d.fire_once:
                s &= ~fired[k]
            fired[k] |= s
            if d.reset == "zero":
                v[k] = torch.where(s, torch.zeros_like(v[k]), v[k])
            elif d.reset == "subtract":
                v[k] = torch.where(s, v[k] - p["theta"], v[k])
            spikes[k][t] = s.to(torch.float64)
            if k == len(dyn) - 1:
                first = torch.where(s & (count == 0), torch.full_like(first, t), first)
                count += s.to(torch.int64)
            x = s.to(torch.float64)
    return FloatResult(spikes=spikes, v=v[-1], count=count, first=first,
                       prediction=float_readout(readout, count, first, v[-1], T))
