"""AGMM: adaptive gradient modulation of the synaptic current, folded to the identity at inference.

See docs/agmm.md for the formulation and its derivation. In short, for the synaptic current
``X[t]`` (``[B, N]``) of a layer at step t::

    g[t, b] = alpha[t] * sigmoid( mean_j X[t, b, j] / norm )        # alpha learnable per (layer, step)
    Y[t]    = g[t] * X[t]                                           # the gated current of the method

Mode ``"gradient"`` (default, hardware-exact): the forward value is ``X`` itself and the backward pass
is that of ``Y``: ``out = X + (Y - Y.detach())``. The floating-point difference ``Y - Y.detach()`` is
exactly zero, so the forward pass stays the integer computation of the core, while the gradients
reaching the binary weights (and alpha) are those of the gated network. Nothing is left to fold.

Mode ``"forward"`` gates the forward value as the reconstructed method does; it is *not*
hardware-exact and is only offered for experiments (export refuses it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AGMM", "is_per_step"]


def is_per_step(name: str) -> bool:
    """A model state entry shaped by the time steps (an AGMM gate's ``alpha``, one entry per
    step), not by the network: it acts in training only, never in the integer forward pass."""
    return name.startswith("gates.")


class AGMM(nn.Module):
    """Gate of one layer: learnable ``alpha[t]`` (one per step) times sigmoid of the mean input.

    Parameters
    ----------
    time_steps : int
        Number of steps T (one alpha per step).
    fan_in : int
        Fan-in of the layer; the mean is divided by ``sqrt(fan_in)`` so that the sigmoid sees the
        current in the units of a batch-normalised pre-activation (binary weights, no batch norm).
    mode : {"gradient", "forward"}
    alpha_init : float
    alpha_min : float or None
        If set, the gate uses ``max(alpha, alpha_min)``. In mode "gradient" alpha has no effect on
        the forward value, so its gradient never meets a consequence and alpha drifts freely
        (measured: to negative values, which reverses the modulated gradient of those steps);
        ``alpha_min = 0`` keeps the modulation a non-negative reweighting (docs/agmm.md).
    """

    def __init__(self, time_steps: int, fan_in: int, mode: str = "gradient", alpha_init: float = 1.0,
                 alpha_min: float | None = None):
        super().__init__()
        if mode not in ("gradient", "forward"):
            raise ValueError(f"AGMM mode must be 'gradient' or 'forward', got {mode!r}")
        self.mode = mode
        self.norm = math.sqrt(max(1, fan_in))
        self.alpha_min = alpha_min
        self.alpha = nn.Parameter(torch.full((time_steps,), float(alpha_init)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """g[t, b] with shape [T, B, 1] for a current ``x`` of shape [T, B, N]."""
        m = x.mean(dim=-1, keepdim=True) / self.norm
        alpha = self.alpha if self.alpha_min is None else self.alpha.clamp(min=self.alpha_min)
        return alpha.view(-1, 1, 1)[: x.shape[0]] * torch.sigmoid(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "forward":
            return self.gate(x) * x
        if not (x.requires_grad or self.alpha.requires_grad) or not torch.is_grad_enabled():
            return x
        alpha = self.alpha if self.alpha_min is None else self.alpha.clamp(min=self.alpha_min)
        return _GradientGate.apply(x, alpha[: x.shape[0]], self.norm)


class _GradientGate(torch.autograd.Function):
    """Mode "gradient" in one autograd node: forward value ``x`` (what ``x + (y - y.detach())``
    evaluates to for finite ``y``), backward pass that of ``x + y`` with ``y = g * x``,
    ``g[t, b] = alpha[t] * sigmoid(mean_j x[t, b, j] / norm)``. Nothing of the gate is computed in
    the forward pass; the gradients equal autograd's on the three-term expression up to the order of
    floating-point sums."""

    @staticmethod
    def forward(ctx, x, alpha, norm):
        ctx.save_for_backward(x, alpha)
        ctx.norm = norm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, gout):
        x, alpha = ctx.saved_tensors
        sig = torch.sigmoid(x.mean(dim=-1, keepdim=True) / ctx.norm)  # [T, B, 1]
        a = alpha.view(-1, 1, 1)
        ggate = (gout * x).sum(dim=-1, keepdim=True)  # d loss / d g
        galpha = (ggate * sig).sum(dim=(1, 2)) if ctx.needs_input_grad[1] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gm = torch.ops.aten.sigmoid_backward(ggate * a, sig) / ctx.norm / x.shape[-1]
            gx = torch.addcmul(gout, gout, a * sig).add_(gm)  # gout + gout * g + d(mean)/dx
        return gx, galpha, None
