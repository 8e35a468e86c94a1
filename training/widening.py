"""Widening a trained network by duplicating its neurons, without changing what it computes.

``[train] init_layers = "widen"`` starts a wider network from a trained one (``init_from``): every
layer of the new network keeps its kind, kernel, stride and padding, and has an integer multiple
``m`` of the checkpoint's channels (conv2d) or neurons (dense); the output layer keeps its classes.
New unit ``n`` is a copy of old unit ``n mod N`` (tiling), so a layer whose input was widened
``m_in`` times sees every old input unit ``m_in`` times (a flatten of a channel-tiled map is the old
flat vector tiled, because maps flatten channel first). Its synaptic input is then ``m_in`` times
the old one, and with its bias and threshold scaled by ``m_in`` its potential is ``m_in`` times the
old potential at every step: the same spikes, and at the output the same argmax. This is exact in
the integer semantics for neurons without leak (a leak floors ``v >> leak``, which does not scale)
and as long as the scaled potentials stay inside ``v_width`` (saturation); the training run
(``bsnn.training.train.widen_from``) prints how many predictions of its init batch changed, so a
user sees when it is not. A fixed threshold (the potential readout's, never reached) is kept.

Copies have equal weights and so receive equal gradients: the copies of a trained network would
stay copies. The latent weights' magnitudes are therefore multiplied by random factors in
``[1 - JITTER, 1 + JITTER]`` (seeded; the signs, so the forward pass, are unchanged), which makes
copies flip their signs at different steps and diverge.
"""
from __future__ import annotations

import math

import torch

from bsnn.firmware_export.errors import InputError

__all__ = ["JITTER", "WidenError", "widen_state", "widening_factors"]

JITTER = 0.5


class WidenError(InputError):
    """The checkpoint's network cannot be widened into the configured one (one line)."""


def _ratio(new: int, old: int, what: str) -> int:
    if old <= 0 or new % old:
        raise WidenError(f"{what}: {new} is not a multiple of the checkpoint's {old}")
    return new // old


def widening_factors(model, state: dict) -> list:
    """Per layer of ``model`` the pair ``(m_in, m_out)``: how many times its input units and its
    output channels (or neurons) are the checkpoint's ``state``."""
    factors = []
    for k, cfg in enumerate(model.layer_cfgs):
        key = f"weights.{k}"
        if key not in state:
            raise WidenError(f"layer {k}: the checkpoint has no {key} (it has fewer layers)")
        new, old = tuple(model.weights[k].shape), tuple(state[key].shape)
        if len(new) != len(old):
            raise WidenError(f"layer {k}: a {cfg.kind} layer here, another kind in the checkpoint")
        if cfg.kind == "conv2d":
            if new[2:] != old[2:]:
                raise WidenError(f"layer {k}: kernel {new[2:]} here, {old[2:]} in the checkpoint")
            m_out = _ratio(new[0], old[0], f"layer {k} channels")
            m_in = _ratio(new[1], old[1], f"layer {k} input channels")
        elif cfg.kind == "dense":
            m_in = _ratio(new[0], old[0], f"layer {k} inputs")
            m_out = _ratio(new[1], old[1], f"layer {k} neurons")
        else:   # pool2d keeps the channels of the layer before it
            m_in = m_out = factors[-1][1]
        if factors and m_in != factors[-1][1]:
            raise WidenError(f"layer {k}: its input is {m_in} times the checkpoint's, but layer "
                             f"{k - 1} is {factors[-1][1]} times as wide")
        factors.append((m_in, m_out))
    if factors[0][0] != 1:
        raise WidenError("layer 0: the input units cannot be widened")
    if factors[-1][1] != 1:
        raise WidenError("the output layer must keep the checkpoint's classes")
    extra = sorted(k for k in state if k.split(".")[0] == "weights" and int(k.split(".")[1]) >= len(factors))
    if extra:
        raise WidenError(f"the checkpoint has more layers ({extra[0]})")
    return factors


@torch.no_grad()
def widen_state(model, state: dict, generator: torch.Generator | None = None) -> list:
    """Set ``model`` to the checkpoint ``state`` widened by duplication (module docstring); returns
    ``widening_factors``. Raises :class:`WidenError` when the shapes do not tile or a scaled
    threshold or bias leaves its integer range."""
    factors = widening_factors(model, state)
    for k, (m_in, m_out) in enumerate(factors):
        if not model.layer_cfgs[k].has_neurons:
            continue
        w_old = state[f"weights.{k}"]
        reps = (m_out, m_in, 1, 1) if w_old.dim() == 4 else (m_in, m_out)
        w = w_old.to(model.weights[k].dtype).repeat(*reps)
        if m_in > 1 or m_out > 1:
            w.mul_(torch.empty(w.shape).uniform_(1 - JITTER, 1 + JITTER, generator=generator))
        model.weights[k].copy_(w)
        for name, lo, hi in (("bias", model.bias_lo, model.bias_hi), ("theta", 1, model.theta_max)):
            if not getattr(model, name)[k].requires_grad:
                continue   # a fixed value (the potential readout's unreachable threshold) stays
            # the integer the forward pass uses times m_in, plus the old latent fraction (in
            # [-0.5, 0.5), so it rounds back to that integer and keeps its progress to the next)
            latent = state[f"{name}.{k}"].to(torch.float64).clamp(lo, hi)
            integer = torch.floor(latent + 0.5)
            scaled = integer * m_in
            if scaled.numel() and (scaled.min() < lo or scaled.max() > hi):
                raise WidenError(f"layer {k}: {name} times {m_in} leaves [{lo}, {hi}]")
            widened = scaled + (latent - integer)
            getattr(model, name)[k].copy_(widened.repeat(m_out).to(model.weights[k].dtype))
        gate = f"gates.{k}.alpha"
        if gate in state and len(model.gates) > k and state[gate].shape == model.gates[k].alpha.shape:
            model.gates[k].alpha.copy_(state[gate])
    # the output potentials grew m_in times: the loss's temperature shrinks as much
    model.log_logit_scale.copy_(state["log_logit_scale"] - math.log(factors[-1][0]))
    return factors
