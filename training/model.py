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
import torch.nn.functional as F
from torch import nn

from bsnn.firmware_export.bundle import LAYER_KINDS
from bsnn.firmware_export.golden import (count_first, heaviside, predicted_class, run_layer,
                                         synaptic_input)
from bsnn.firmware_export.spatial import input_units, output_shape

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
    # docs/semantics.md section 10: ``dense``, ``conv2d`` (``channels`` kernels of ``kernel``, with
    # ``stride`` and zero ``padding``; ``(h, w)`` pairs) or ``pool2d`` (OR pooling: no neurons).
    # ``size`` is the number of outputs (a map's C * H * W).
    kind: str = "dense"
    channels: int | None = None
    kernel: tuple | None = None
    stride: tuple | None = None
    padding: tuple | None = None

    def __post_init__(self):
        if self.reset not in ("subtract", "zero", "none"):
            raise ValueError(f"reset must be subtract, zero or none, got {self.reset!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}")
        for name in ("kernel", "stride", "padding"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(int(v) for v in value))

    @property
    def has_neurons(self) -> bool:
        return self.kind != "pool2d"


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
                 weight_init=0.1, logit_scale=0.1, theta_init=None, input_shape=None,
                 input_polarity="xnor"):
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
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.input_polarity = str(input_polarity)
        self.in_shapes = self._check_shapes()
        agmm = dict(agmm or {})
        self.agmm_enabled = bool(agmm.get("enabled", False))
        self.weights = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.theta = nn.ParameterList()
        self.gates = nn.ModuleList()
        n_in = self.input_units
        for k, cfg in enumerate(self.layer_cfgs):
            if cfg.kind == "conv2d":
                c_in = self.in_shapes[k][0]
                shape, fan_in, n_params = (cfg.channels, c_in, *cfg.kernel), c_in * cfg.kernel[0] * cfg.kernel[1], cfg.channels
            elif cfg.kind == "dense":
                shape, fan_in, n_params = (n_in, cfg.size), n_in, cfg.size
            else:   # pool2d: nothing to learn (empty placeholders keep the per-layer indices)
                shape, fan_in, n_params = (0,), 0, 0
            w = torch.empty(shape).uniform_(-weight_init, weight_init)
            self.weights.append(nn.Parameter(w, requires_grad=cfg.has_neurons))
            self.bias.append(nn.Parameter(torch.zeros(n_params), requires_grad=cfg.learn_bias and cfg.has_neurons))
            t0 = float(theta_init[k]) if theta_init is not None else float(max(1, round(fan_in ** 0.5)))
            if cfg.reset == "none" and not cfg.learn_threshold:
                t0 = float(self.theta_max)
            self.theta.append(nn.Parameter(torch.full((n_params,), t0),
                                           requires_grad=cfg.learn_threshold and cfg.has_neurons))
            if self.agmm_enabled:
                self.gates.append(AGMM(self.time_steps, max(1, fan_in), agmm.get("mode", "gradient"),
                                       agmm.get("alpha_init", 1.0), agmm.get("alpha_min")))
            n_in = cfg.size
        self.log_logit_scale = nn.Parameter(torch.tensor(float(np.log(logit_scale))))

    def _check_shapes(self) -> list:
        """Per layer the ``(C, H, W)`` map it reads (None where flat), checking each layer's size
        against its shape (docs/semantics.md 10.1)."""
        if self.input_polarity not in ("xnor", "channels"):
            raise ValueError(f"input_polarity must be xnor or channels, got {self.input_polarity!r}")
        shape, shapes = self.input_shape, []
        if shape is not None and int(np.prod(shape)) != self.input_units:
            raise ValueError(f"input_shape {shape} does not hold the {self.input_units} input units")
        for k, cfg in enumerate(self.layer_cfgs):
            shapes.append(shape)
            if cfg.kind == "dense":
                shape = None
                continue
            if shape is None:
                raise ValueError(f"layer {k}: a {cfg.kind} layer needs a map to read (input_shape, "
                                 f"or a conv2d/pool2d layer before it)")
            if cfg.kind == "pool2d" and k == 0:
                raise ValueError("layer 0: pool2d cannot read the input events")
            shape = output_shape(cfg, shape)
            if min(shape) < 1 or int(np.prod(shape)) != cfg.size:
                raise ValueError(f"layer {k}: {cfg.kind} of a {shapes[-1]} map gives {shape}, "
                                 f"not {cfg.size} outputs")
        if not self.layer_cfgs[-1].has_neurons:
            raise ValueError("the output layer needs neurons (dense or conv2d), not pool2d")
        return shapes

    @property
    def input_units(self) -> int:
        """Layer 1's input units (docs/semantics.md 10.2): ``N_0``, or ``2 N_0`` with polarity channels."""
        return self.input_size * (2 if self.input_polarity == "channels" else 1)

    # ---------------------------------------------------------- integer parameters
    @property
    def sizes(self):
        return [self.input_size] + [l.size for l in self.layer_cfgs]

    @property
    def neuron_layers(self) -> list:
        """Indices of the layers with neurons (all but pool2d)."""
        return [k for k, c in enumerate(self.layer_cfgs) if c.has_neurons]

    def per_neuron(self, k: int, values: torch.Tensor) -> torch.Tensor:
        """Layer ``k``'s per-channel (conv2d) or per-neuron (dense) parameter, one per neuron."""
        cfg = self.layer_cfgs[k]
        if cfg.kind == "conv2d":
            return values.repeat_interleave(cfg.size // cfg.channels)
        return values

    def int_bias(self, k: int) -> torch.Tensor:
        """Layer ``k``'s integer bias per neuron (straight-through rounding)."""
        return self.per_neuron(k, round_ste(self.bias[k], self.bias_lo, self.bias_hi))

    def int_theta(self, k: int) -> torch.Tensor:
        """Layer ``k``'s integer threshold per neuron (straight-through rounding)."""
        return self.per_neuron(k, round_ste(self.theta[k], 1, self.theta_max))

    @torch.no_grad()
    def clip_latent(self, bound: float = 1.0):
        for w in self.weights:
            w.clamp_(-bound, bound)
        for k in range(len(self.layer_cfgs)):
            self.bias[k].clamp_(self.bias_lo, self.bias_hi)
            self.theta[k].clamp_(1, self.theta_max)

    # ---------------------------------------------------------- dynamics
    def exported_bias_theta(self, k: int):
        """The integer bias and threshold of layer ``k`` as exported (int64; per output channel
        for conv2d)."""
        bias = round_half_up(self.bias[k].detach().clamp(self.bias_lo, self.bias_hi)).to(torch.int64)
        theta = round_half_up(self.theta[k].detach().clamp(1, self.theta_max)).to(torch.int64)
        return bias, theta

    def hardware_bias_theta(self, k: int):
        """The integer bias and threshold of layer ``k``'s neurons (int64, one per neuron)."""
        bias, theta = self.exported_bias_theta(k)
        return self.per_neuron(k, bias), self.per_neuron(k, theta)

    def signed_weights(self, k: int, hardware: bool, dtype) -> torch.Tensor:
        """Layer ``k``'s weights as +-1: exact signs in hardware mode, with the STE in training."""
        w = self.weights[k]
        return torch.where(w.detach() >= 0, 1.0, -1.0).to(dtype) if hardware else binary_sign(w).to(dtype)

    def synaptic(self, k: int, x: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        """Layer ``k``'s synaptic input ``[T, B, N_k]`` from the events into it ``[T, B, N_{k-1}]``:
        a product for a dense layer, a convolution for a conv2d layer (semantics 4 and 10.3;
        exact integers, as ``spatial.Conv2dWiring``)."""
        cfg = self.layer_cfgs[k]
        if cfg.kind == "dense":
            return synaptic_input(x, wb)
        T, B = x.shape[:2]
        maps = x.reshape(T * B, *self.in_shapes[k])
        out = F.conv2d(maps, wb, stride=cfg.stride, padding=cfg.padding)
        return out.reshape(T, B, -1)

    def pool(self, k: int, s: torch.Tensor) -> torch.Tensor:
        """OR pooling (semantics 10.4) of spikes ``[T, B, N_{k-1}]`` as the max over each window
        (padding silent); in training the gradient goes to the spike the max picked."""
        cfg = self.layer_cfgs[k]
        T, B = s.shape[:2]
        maps = s.reshape(T * B, *self.in_shapes[k])
        ph, pw = cfg.padding
        if ph or pw:
            maps = F.pad(maps, (pw, pw, ph, ph))
        return F.max_pool2d(maps, cfg.kernel, cfg.stride).reshape(T, B, -1)

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

    def input_events(self, on, off, dtype) -> torch.Tensor:
        """Layer 1's signed input per unit ``[T, B, units]`` (semantics 10.2)."""
        if off is None:
            if self.input_polarity == "xnor":
                return on.to(dtype)
            off = torch.zeros_like(on)
        return input_units(self, on, off)[0].to(dtype)

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
        x = self.input_events(on, off, dtype)
        spikes, vs, cs, currents = [], [], [], []
        traces = [] if trace else None
        count = first = None
        last = len(self.layer_cfgs) - 1
        for k, cfg in enumerate(self.layer_cfgs):
            if not cfg.has_neurons:   # OR pooling: no state, nothing to record
                s = self.pool(k, x)
                spikes.append(s)
                vs.append(None)
                cs.append(None)
                if keep_currents:
                    currents.append(None)
                x = s
                continue
            wb = self.signed_weights(k, hardware, dtype)
            I = self.synaptic(k, x, wb)
            if self.agmm_enabled and not hardware:
                I = self.gates[k](I)
            if keep_currents:
                currents.append(I.detach())
            if hardware or trace:
                s, v, c, count, first = self._layer(k, I, hardware, traces,
                                                    {"input": x.detach(), "w": wb} if trace else None)
            else:
                s, v, c = self._layer_fused(k, I)
                if k == last:  # only the output layer's count/first are used
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
    def init_thresholds(self, on, off=None, factor: float = 1.0, keep=()):
        """Set each learnable threshold layer by layer to ``factor * std`` of its synaptic input,
        except in the layers listed in ``keep`` (loaded from a trained network)."""
        x = self.input_events(on, off, torch.float32)
        for k, cfg in enumerate(self.layer_cfgs):
            if not cfg.has_neurons:
                x = self.pool(k, x)
                continue
            I = self.synaptic(k, x, self.signed_weights(k, True, torch.float32))
            if cfg.learn_threshold and k not in keep:
                th = float(max(1.0, round(factor * float(I.std()))))
                self.theta[k].fill_(min(th, self.theta_max))
            s, *_ = self._layer(k, I, True)
            x = s.float()

    # ---------------------------------------------------------- bundle conversion
    def hardware_params(self):
        """Integer parameters as numpy: weights uint8 (dense ``[N_in, N_out]``, conv2d
        ``[C_out, C_in, K_h, K_w]``), bias and threshold int64 (per output channel for conv2d);
        a pool2d layer has empty arrays."""
        weights, bias, theta = [], [], []
        for k in range(len(self.layer_cfgs)):
            weights.append((self.weights[k].detach() >= 0).to(torch.uint8).cpu().numpy())
            b, t = self.exported_bias_theta(k)
            bias.append(b.cpu().numpy())
            theta.append(t.cpu().numpy())
        return weights, bias, theta

    def layer_specs(self) -> list:
        """The bundle's ``LayerSpec`` of every layer."""
        from bsnn.firmware_export.bundle import LayerSpec

        specs = []
        for c in self.layer_cfgs:
            if c.kind == "pool2d":
                specs.append(LayerSpec(size=c.size, kind="pool2d", kernel=c.kernel, stride=c.stride,
                                       padding=c.padding))
                continue
            spatial = dict(kind="conv2d", channels=c.channels, kernel=c.kernel, stride=c.stride,
                           padding=c.padding) if c.kind == "conv2d" else {}
            specs.append(LayerSpec(size=c.size, current=c.current, leak_v=c.leak_v, leak_c=c.leak_c,
                                   reset=c.reset, fire_once=c.fire_once, **spatial))
        return specs

    def to_bundle(self, metadata: dict | None = None):
        """The exported integer model (``bsnn.firmware_export.bundle.Bundle``)."""
        from bsnn.firmware_export.bundle import Bundle

        if self.agmm_enabled and any(g.mode == "forward" for g in self.gates):
            raise ValueError("AGMM mode 'forward' is not hardware-exact and cannot be exported")
        weights, bias, theta = self.hardware_params()
        spatial = {} if self.input_shape is None else {"input_shape": list(self.input_shape),
                                                       "input_polarity": self.input_polarity}
        return Bundle(
            input_size=self.input_size, time_steps=self.time_steps, v_width=self.v_width,
            c_width=self.c_width, bias_width=self.bias_width, readout=self.readout,
            max_input_events=self.max_input_events, layers=self.layer_specs(), weights=weights,
            bias=bias, threshold=theta, metadata=dict(metadata or {}), **spatial,
        )

    @classmethod
    def from_bundle(cls, bundle) -> "BSNN":
        """A network whose hardware mode computes exactly what ``bundle`` describes."""
        layers = []
        for l in bundle.layers:
            spatial = dict(kind=l.kind, channels=l.channels, kernel=l.kernel, stride=l.stride,
                           padding=l.padding) if l.kind != "dense" else {}
            layers.append(LayerConfig(size=l.size, current=l.current, leak_v=l.leak_v, leak_c=l.leak_c,
                                      reset=l.reset, fire_once=l.fire_once, **spatial))
        net = cls(bundle.input_size, layers, bundle.time_steps, v_width=bundle.v_width,
                  c_width=bundle.c_width, bias_width=bundle.bias_width, readout=bundle.readout,
                  max_input_events=bundle.max_input_events, input_shape=bundle.input_shape,
                  input_polarity=bundle.input_polarity)
        with torch.no_grad():
            for k, layer in enumerate(layers):
                if not layer.has_neurons:
                    continue
                w = torch.as_tensor(np.asarray(bundle.weights[k]).astype(np.float32))
                net.weights[k].copy_(w - 0.5)  # bit 1 -> +0.5, bit 0 -> -0.5
                net.bias[k].copy_(torch.as_tensor(np.asarray(bundle.bias[k]), dtype=torch.float32))
                net.theta[k].copy_(torch.as_tensor(np.asarray(bundle.threshold[k]), dtype=torch.float32))
        return net
