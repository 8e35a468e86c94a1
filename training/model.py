"""Binary spiking network whose forward pass is the integer arithmetic of docs/semantics.md.

Every layer has binary weights (``sign`` of latent reals, straight-through estimator). Biases and
thresholds are learned reals rounded to integers in the forward pass (straight-through). The neuron
arithmetic itself is not written here: the synaptic input, the neuron update (saturation, leaks,
bias, threshold, reset, fire-once), spike count and first spike and the prediction are the golden
model's functions (``bsnn.firmware_export.golden``: ``synaptic_input``, ``run_layer``/``layer_step``,
``count_first``, ``predicted_class``), called

* in hardware mode (``hardware=True``) and by ``init_thresholds`` on int64 tensors, exactly as
  ``run_golden`` runs them: hardware mode equals ``run_golden`` on the exported bundle, spike for
  spike;
* in training with traces (``trace=True``, for SSR) on float32 tensors holding integers, with
  autograd: ``spike_fn`` gives the spike a triangular surrogate gradient in the backward pass, the
  leak's floor and the reset are straight-through/detached as the golden functions define;
* in training without traces through ``_LayerScan``, one autograd node per layer for speed
  (docs/training.md section 7): its forward pass *is* the golden ``run_layer`` (float32, no
  autograd recording), and only its backward pass is written here, by hand, as the gradient of the
  graph the trace path records (tests/training/test_fused.py checks both against each other).

So the training forward pass computes exactly the integers the core computes; training differs
from hardware mode only in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bsnn.firmware_export.golden import (count_first, heaviside, predicted_class, run_layer,
                                         synaptic_input)

from .agmm import AGMM

__all__ = [
    "LayerConfig",
    "BSNN",
    "binary_sign",
    "round_ste",
    "spike_fn",
    "ForwardResult",
]


# ---------------------------------------------------------------- straight-through pieces
def _ge_float(a: torch.Tensor, b) -> torch.Tensor:
    """``(a >= b)`` as 0./1. in ``a``'s dtype (a comparison written straight into a float tensor is
    several times faster on CPU than a bool result converted afterwards; NaN compares False)."""
    return torch.ge(a, b, out=torch.empty_like(a))


class _BinarySign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        # +1 where w >= 0 else -1 (NaN -> -1), as torch.where(w >= 0, 1, -1) but faster.
        return _ge_float(w, 0.0).mul_(2.0).sub_(1.0)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        m = w.abs()
        return torch.le(m, 1.0, out=m).mul_(g)  # g * (|w| <= 1)


def binary_sign(w: torch.Tensor) -> torch.Tensor:
    """+1 where ``w >= 0`` else -1; gradient passed where ``|w| <= 1`` (STE)."""
    return _BinarySign.apply(w)


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``clamp(round(x), lo, hi)`` in the forward pass, identity gradient (inside the range)."""
    xc = x.clamp(lo, hi)
    return xc + (round_half_up(xc) - xc).detach()


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, width):
        ctx.save_for_backward(u, width)
        return heaviside(u)

    @staticmethod
    def backward(ctx, g):
        u, width = ctx.saved_tensors
        sg = torch.clamp(1.0 - u.abs() / width, min=0.0) / width
        return g * sg, None


def spike_fn(u: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``golden.heaviside(u)`` (``u >= 0``); triangular surrogate gradient of half-width ``width``:
    the ``spike`` training passes to the golden ``layer_step`` (``u`` = potential - threshold)."""
    return _Spike.apply(u, width)


class _LayerScan(torch.autograd.Function):
    """The training-mode time loop of one layer (``BSNN._layer`` with ``hardware=False``) as one
    autograd node, with the backward pass written out by hand.

    The forward pass is the golden model's ``run_layer`` on the float32 tensors (autograd does not
    record inside a Function's forward), so it computes the values of ``BSNN._layer`` bit for bit,
    the sign of zero included. What it saves is the recording of ~15 autograd nodes per step and
    layer: the backward pass needs only the pre-saturation potentials (and currents) and the spikes,
    from which the saturation masks and the surrogate are computed for all steps at once (a mask is
    skipped when nothing saturated: it would be all ones). Gradients equal those of autograd up to
    the order of floating-point sums (tests/training/test_fused.py).

    ``spec = (layer, v_width, c_width)``, ``layer`` a ``LayerConfig``. Returns the spikes
    ``[T, B, N]``, the final potential and the final current ``[B, N]``.
    """

    @staticmethod
    def forward(ctx, I, bias, theta, width, spec):
        layer, v_width, c_width = spec
        v_lo, v_hi = -(1 << (v_width - 1)), (1 << (v_width - 1)) - 1
        c_lo, c_hi = -(1 << (c_width - 1)), (1 << (c_width - 1)) - 1
        run = run_layer(layer, v_width, c_width, I, bias, theta,
                        record=("v_exact", "c_exact") if layer.current else ("v_exact",))
        S, Vp, Cp = run.spikes, run.recorded["v_exact"], run.recorded.get("c_exact")
        Fb = None
        if layer.fire_once:  # fired before the step: any spike in the earlier steps
            Fb = torch.cat([torch.zeros_like(S[:1]), S[:-1].cummax(0).values])
        vmin, vmax = torch.aminmax(Vp)
        ctx.sat_v = bool(vmin < v_lo) or bool(vmax > v_hi)
        if layer.current:
            cmin, cmax = torch.aminmax(Cp)
            ctx.sat_c = bool(cmin < c_lo) or bool(cmax > c_hi)
        ctx.spec = spec
        ctx.save_for_backward(Vp, S, theta, width, Cp, Fb)
        return S, run.state.v, run.state.c

    @staticmethod
    def backward(ctx, gS, gv, gc):
        layer, v_width, c_width = ctx.spec
        current, leak_v, leak_c, reset, fire_once = (layer.current, layer.leak_v, layer.leak_c,
                                                     layer.reset, layer.fire_once)
        v_lo, v_hi = -(1 << (v_width - 1)), (1 << (v_width - 1)) - 1
        c_lo, c_hi = -(1 << (c_width - 1)), (1 << (c_width - 1)) - 1
        Vp, S, theta, width, Cp, Fb = ctx.saved_tensors
        T = Vp.shape[0]
        # Vectorised over the steps, in place where possible (each [T, B, N] temporary costs a
        # pass over memory): the saturation masks (clamp passes the gradient where
        # lo <= x <= hi, i.e. where clamping leaves x unchanged) and the surrogate.
        U = Vp.clamp(v_lo, v_hi)
        Mv = torch.eq(U, Vp, out=torch.empty_like(Vp)).unbind(0) if ctx.sat_v else None
        Mc = None
        if current:
            Mc = torch.eq(Cp.clamp(c_lo, c_hi), Cp, out=torch.empty_like(Cp)).unbind(0) if ctx.sat_c else None
        gtheta = None
        if gS is not None:
            # A = g * clamp(1 - |u - theta| / width, min=0) / width, u the saturated potential,
            # as spike_fn's backward; ``-q + 1`` is ``1 - q`` exactly.
            A = U.sub_(theta).abs_().div_(width).neg_().add_(1.0).clamp_(min=0.0).div_(width)
            A.mul_(gS * (1.0 - Fb) if fire_once else gS)
            if ctx.needs_input_grad[2]:
                gtheta = A.sum((0, 1)).neg_()
        else:
            A = U.zero_()
        # The recurrence through the steps, written into A: A[t] becomes the gradient of the
        # pre-saturation potential of step t.
        As = A.unbind(0)
        Ss = S.unbind(0)
        gvc = gv
        gcc = gc if current else None
        gI = torch.empty_like(Vp) if current else A
        gIs = gI.unbind(0)
        for t in range(T - 1, -1, -1):
            gp = As[t]
            if gvc is not None:
                gp.add_(gvc * (1.0 - Ss[t]) if reset == "zero" else gvc)
            if Mv is not None:
                gp.mul_(Mv[t])
            gvc = gp - gp / float(1 << leak_v) if leak_v else gp
            if current:
                gct = gp if gcc is None else gcc + gp
                gcp = torch.mul(gct, Mc[t], out=gIs[t]) if Mc is not None else gIs[t].copy_(gct)
                gcc = gcp - gcp / float(1 << leak_c) if leak_c else gcp
        gbias = A.sum((0, 1)) if ctx.needs_input_grad[1] else None
        return gI, gbias, gtheta, None, None


# ---------------------------------------------------------------- configuration
@dataclass
class LayerConfig:
    """One layer, with the fields of ``bsnn.firmware_export.bundle.LayerSpec``."""

    size: int
    current: bool = False
    leak_v: int = 0
    leak_c: int = 0
    reset: str = "subtract"
    fire_once: bool = False
    learn_threshold: bool = True
    learn_bias: bool = True

    def __post_init__(self):
        if self.reset not in ("subtract", "zero", "none"):
            raise ValueError(f"reset must be subtract, zero or none, got {self.reset!r}")


@dataclass
class ForwardResult:
    spikes: list  # per layer [T, B, N_l] (float in training; bool in hardware mode)
    v: list  # final potentials per layer [B, N_l]
    c: list  # final currents per layer [B, N_l]
    count: torch.Tensor  # output layer spike counts [B, N_L]
    first: torch.Tensor  # output layer first spike step or -1 [B, N_L]
    logits: torch.Tensor | None = None  # differentiable readout scores (training)
    prediction: torch.Tensor | None = None
    currents: list = field(default_factory=list)  # synaptic input per layer [T, B, N_l]
    # with trace=True, per layer {"u": pre-reset potential [T,B,N], "slope": drive + bias [T,B,N],
    # "theta": threshold as used [N], "spikes": [T,B,N], "input", "w", "bias", neuron options}
    # for the sparse-firing regularizers of training/ssr.py
    traces: list = field(default_factory=list)


# ---------------------------------------------------------------- the network
class BSNN(nn.Module):
    """Binary-weight spiking MLP computing the core's integer semantics.

    Parameters
    ----------
    input_size : int
    layers : list of LayerConfig
        Hidden layers then the output layer.
    time_steps : int
    v_width, c_width, bias_width : int
    readout : {"potential", "spike_count", "first_spike"}
    max_input_events : int
    agmm : dict or None
        ``{"enabled": bool, "mode": "gradient", "alpha_init": 1.0}``.
    surrogate_width : float
        Half-width of the triangular surrogate, as a fraction of each neuron's threshold.
    weight_init : float
        Latent weights start uniform in ``[-weight_init, weight_init]``.
    logit_scale : float
        Initial value of the learnable temperature that scales the readout into the loss
        (argmax-invariant, so it never reaches the hardware).
    """

    def __init__(self, input_size, layers, time_steps, *, v_width=16, c_width=16, bias_width=16,
                 readout="potential", max_input_events=None, agmm=None, surrogate_width=1.0,
                 weight_init=0.1, logit_scale=0.1, theta_init=None):
        super().__init__()
        self.input_size = int(input_size)
        self.layer_cfgs = [l if isinstance(l, LayerConfig) else LayerConfig(**l) for l in layers]
        self.time_steps = int(time_steps)
        self.v_width, self.c_width, self.bias_width = int(v_width), int(c_width), int(bias_width)
        self.readout = readout
        self.max_input_events = int(max_input_events or input_size)
        self.surrogate_width = float(surrogate_width)
        self.theta_max = (1 << (self.v_width - 1)) - 1
        self.bias_lo, self.bias_hi = -(1 << (self.bias_width - 1)), (1 << (self.bias_width - 1)) - 1
        agmm = dict(agmm or {})
        self.agmm_enabled = bool(agmm.get("enabled", False))
        sizes = [self.input_size] + [l.size for l in self.layer_cfgs]
        self.weights = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.theta = nn.ParameterList()
        self.gates = nn.ModuleList()
        for k, cfg in enumerate(self.layer_cfgs):
            w = torch.empty(sizes[k], sizes[k + 1]).uniform_(-weight_init, weight_init)
            self.weights.append(nn.Parameter(w))
            self.bias.append(nn.Parameter(torch.zeros(cfg.size), requires_grad=cfg.learn_bias))
            t0 = float(theta_init[k]) if theta_init is not None else float(max(1, round(sizes[k] ** 0.5)))
            if cfg.reset == "none" and not cfg.learn_threshold:
                t0 = float(self.theta_max)
            self.theta.append(nn.Parameter(torch.full((cfg.size,), t0), requires_grad=cfg.learn_threshold))
            if self.agmm_enabled:
                self.gates.append(AGMM(self.time_steps, sizes[k], agmm.get("mode", "gradient"),
                                       agmm.get("alpha_init", 1.0), agmm.get("alpha_min")))
        self.log_logit_scale = nn.Parameter(torch.tensor(float(np.log(logit_scale))))

    # ---------------------------------------------------------- integer parameters
    @property
    def sizes(self):
        return [self.input_size] + [l.size for l in self.layer_cfgs]

    def int_bias(self, k: int) -> torch.Tensor:
        return round_ste(self.bias[k], self.bias_lo, self.bias_hi)

    def int_theta(self, k: int) -> torch.Tensor:
        return round_ste(self.theta[k], 1, self.theta_max)

    @torch.no_grad()
    def clip_latent(self, bound: float = 1.0):
        for w in self.weights:
            w.clamp_(-bound, bound)
        for k in range(len(self.layer_cfgs)):
            self.bias[k].clamp_(self.bias_lo, self.bias_hi)
            self.theta[k].clamp_(1, self.theta_max)

    # ---------------------------------------------------------- dynamics
    def hardware_bias_theta(self, k: int):
        """The integer bias and threshold of layer ``k`` as exported (int64 tensors)."""
        bias = round_half_up(self.bias[k].detach().clamp(self.bias_lo, self.bias_hi)).to(torch.int64)
        theta = round_half_up(self.theta[k].detach().clamp(1, self.theta_max)).to(torch.int64)
        return bias, theta

    def _layer(self, k, I, hardware, trace=None, trace_extra=None):
        """Layer ``k`` through all steps of its synaptic input ``I`` ``[T, B, N]`` with the golden
        ``run_layer``: in hardware mode on int64 with the exported bias and threshold, in training
        with autograd and the surrogate spike. Returns spikes, final v and c, count and first."""
        cfg = self.layer_cfgs[k]
        if hardware:
            bias, theta = self.hardware_bias_theta(k)
            I = I.round().to(torch.int64)
        else:
            bias, theta = self.int_bias(k), self.int_theta(k)
        width = (theta.detach() * self.surrogate_width).clamp(min=1.0)
        spike = heaviside if hardware else (lambda u: spike_fn(u, width))
        run = run_layer(cfg, self.v_width, self.c_width, I, bias, theta, spike,
                        record=("u", "drive") if trace is not None else ())
        count, first = count_first(run.spikes.detach())
        if trace is not None:
            trace.append({"u": run.recorded["u"], "slope": run.recorded["drive"] + bias, "theta": theta,
                          "spikes": run.spikes, "bias": bias, "width": width, "current": cfg.current,
                          "fire_once": cfg.fire_once,
                          "leak_v": cfg.leak_v, "leak_c": cfg.leak_c, **(trace_extra or {})})
        return run.spikes, run.state.v, run.state.c, count, first

    def _layer_fused(self, k, I):
        """``_layer(k, I, hardware=False)`` without trace, as one autograd node (``_LayerScan``):
        the same forward values, the same gradients up to the order of floating-point sums."""
        cfg = self.layer_cfgs[k]
        bias, theta = self.int_bias(k), self.int_theta(k)
        width = (theta.detach() * self.surrogate_width).clamp(min=1.0)
        s, v, c = _LayerScan.apply(I, bias, theta, width, (cfg, self.v_width, self.c_width))
        if not cfg.current:
            c = I.new_zeros(v.shape)
        return s, v, c

    def forward(self, on: torch.Tensor, off: torch.Tensor | None = None, hardware: bool = False,
                keep_currents: bool = False, trace: bool = False) -> ForwardResult:
        """Run the network on input counts ``on``/``off`` ``[T, B, N0]``.

        ``hardware=False``: differentiable, float32, exact integers in the forward pass.
        ``hardware=True``: no autograd, synaptic sums in float64, the neurons in int64; returns
        int64/bool tensors like ``run_golden``.
        """
        if hardware:
            with torch.no_grad():
                return self._forward(on, off, True, keep_currents, trace)
        return self._forward(on, off, False, keep_currents, trace)

    def _forward(self, on, off, hardware, keep_currents, trace=False):
        dtype = torch.float64 if hardware else torch.float32
        x = on.to(dtype) if off is None else (on.to(dtype) - off.to(dtype))
        spikes, vs, cs, currents = [], [], [], []
        traces = [] if trace else None
        count = first = None
        for k in range(len(self.layer_cfgs)):
            w = self.weights[k]
            wb = torch.where(w.detach() >= 0, 1.0, -1.0).to(dtype) if hardware else binary_sign(w).to(dtype)
            I = synaptic_input(x, wb)
            if self.agmm_enabled and not hardware:
                I = self.gates[k](I)
            if keep_currents:
                currents.append(I.detach())
            if hardware or trace:
                s, v, c, count, first = self._layer(k, I, hardware, traces,
                                                    {"input": x.detach(), "w": wb} if trace else None)
            else:
                s, v, c = self._layer_fused(k, I)
                if k == len(self.layer_cfgs) - 1:  # only the output layer's count/first are used
                    count, first = count_first(s.detach())
            spikes.append(s)
            vs.append(v)
            cs.append(c)
            x = s.to(dtype) if hardware else s
        if hardware:
            spikes = [s.to(torch.bool) for s in spikes]
            res = ForwardResult(spikes, vs, cs, count, first, None, None, currents, traces or [])
            res.prediction = predicted_class(self.readout, count, first, vs[-1], self.time_steps, self.v_width)
            return res
        if self.readout == "potential":
            score = vs[-1]
        elif self.readout == "spike_count":
            score = spikes[-1].sum(0)
        elif self.readout == "first_spike":
            # earliness = T - first (0 if never fired): the number of steps since the first spike,
            # differentiable through the surrogate spikes; the final potential (bounded to less
            # than one step) breaks ties as the hardware's second key does.
            fired = torch.clamp(torch.cumsum(spikes[-1], 0), max=1.0)
            theta_out = self.int_theta(len(self.layer_cfgs) - 1).detach()
            score = fired.sum(0) + 0.5 * torch.clamp(vs[-1] / theta_out, -1.0, 1.0)
        else:
            raise ValueError(f"unknown readout {self.readout!r}")
        logits = score * self.log_logit_scale.exp()
        res = ForwardResult(spikes, vs, cs, count, first, logits, None, currents, traces or [])
        with torch.no_grad():
            res.prediction = predicted_class(self.readout, count, first, vs[-1].detach(), self.time_steps,
                                             self.v_width)
        return res

    # ---------------------------------------------------------- initialisation from data
    @torch.no_grad()
    def init_thresholds(self, on, off=None, factor: float = 1.0):
        """Set each learnable threshold layer by layer to ``factor * std`` of its synaptic input."""
        x = on.float() if off is None else on.float() - off.float()
        for k, cfg in enumerate(self.layer_cfgs):
            wb = torch.where(self.weights[k] >= 0, 1.0, -1.0)
            I = synaptic_input(x, wb)
            if cfg.learn_threshold:
                th = float(max(1.0, round(factor * float(I.std()))))
                self.theta[k].fill_(min(th, self.theta_max))
            s, *_ = self._layer(k, I, True)
            x = s.float()

    # ---------------------------------------------------------- bundle conversion
    def hardware_params(self):
        """Integer parameters as numpy: weights uint8 [N_in, N_out], bias and threshold int64."""
        weights, bias, theta = [], [], []
        for k in range(len(self.layer_cfgs)):
            weights.append((self.weights[k].detach() >= 0).to(torch.uint8).cpu().numpy())
            b, t = self.hardware_bias_theta(k)
            bias.append(b.cpu().numpy())
            theta.append(t.cpu().numpy())
        return weights, bias, theta

    def to_bundle(self, metadata: dict | None = None):
        """The exported integer model (``bsnn.firmware_export.bundle.Bundle``)."""
        from bsnn.firmware_export.bundle import Bundle, LayerSpec

        if self.agmm_enabled and any(g.mode == "forward" for g in self.gates):
            raise ValueError("AGMM mode 'forward' is not hardware-exact and cannot be exported")
        weights, bias, theta = self.hardware_params()
        layers = [LayerSpec(size=c.size, current=c.current, leak_v=c.leak_v, leak_c=c.leak_c,
                            reset=c.reset, fire_once=c.fire_once) for c in self.layer_cfgs]
        return Bundle(
            input_size=self.input_size, time_steps=self.time_steps, v_width=self.v_width,
            c_width=self.c_width, bias_width=self.bias_width, readout=self.readout,
            max_input_events=self.max_input_events, layers=layers, weights=weights, bias=bias,
            threshold=theta, metadata=dict(metadata or {}),
        )

    @classmethod
    def from_bundle(cls, bundle) -> "BSNN":
        """A network whose hardware mode computes exactly what ``bundle`` describes."""
        layers = [LayerConfig(size=l.size, current=l.current, leak_v=l.leak_v, leak_c=l.leak_c,
                              reset=l.reset, fire_once=l.fire_once) for l in bundle.layers]
        net = cls(bundle.input_size, layers, bundle.time_steps, v_width=bundle.v_width,
                  c_width=bundle.c_width, bias_width=bundle.bias_width, readout=bundle.readout,
                  max_input_events=bundle.max_input_events)
        with torch.no_grad():
            for k in range(len(layers)):
                w = torch.as_tensor(np.asarray(bundle.weights[k]).astype(np.float32))
                net.weights[k].copy_(w - 0.5)  # bit 1 -> +0.5, bit 0 -> -0.5
                net.bias[k].copy_(torch.as_tensor(np.asarray(bundle.bias[k]), dtype=torch.float32))
                net.theta[k].copy_(torch.as_tensor(np.asarray(bundle.threshold[k]), dtype=torch.float32))
        return net
