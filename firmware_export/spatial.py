"""How each layer kind reads the events into it: docs/semantics.md sections 4 and 10, for the
golden model (and training's hardware-exact forward).

* shapes: a spatial layer's outputs are a ``(C, H, W)`` map with flat index
  ``u = (c * H + y) * W + x`` (PyTorch's NCHW order; flatten into a dense layer is this index);
* :func:`input_units`: the input events of a step as layer 1's input units (section 10.2);
* :func:`layer_wiring`: per layer, its synaptic input (``dense``: a matrix product, ``conv2d``: a
  convolution), its OR pooling (``pool2d``), its per-channel parameters spread over its neurons,
  and the SOPs of the events into it (section 10.6).

``layer`` arguments are :class:`bsnn.firmware_export.bundle.LayerSpec`-like (``kind``, ``size``,
``channels``, ``kernel``, ``stride``, ``padding``); this module imports nothing else of ours, so
that bundle.py can use its shape arithmetic.

Exactness: synaptic sums are float32 products and convolutions (``torch.nn.functional.conv2d``,
direct summation on the CPU) of integer operands and +-1 weights. Every partial sum is a sum of
some of the terms of one neuron's input, so its magnitude is at most the number of events that
reach that neuron in the step: at most ``max_input_events`` (layer 1) or ``N_{l-1}`` (spikes, at
most one per unit), both below 2^24 (bundle limits), where float32 holds every integer exactly.
Rounding back to int64 is therefore exact. (On a GPU, TF32 convolutions would break this bound.)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["synaptic_input", "window_outputs", "window_fan_in", "output_shape", "layer_input_shapes", "taps_per_position",
           "input_units", "layer_wiring", "DenseWiring", "Conv2dWiring", "Pool2dWiring"]


def window_outputs(extent: int, kernel: int, stride: int, padding: int) -> int:
    """Windows along one dimension (section 10.1): ``(extent + 2 padding - kernel) // stride + 1``;
    windows that would pass the padded end are dropped (PyTorch's floor mode)."""
    return (extent + 2 * padding - kernel) // stride + 1


def window_fan_in(kind: str, in_shape, kernel) -> int:
    """The most distinct sources of one output of a conv2d or pool2d layer reading ``in_shape``
    (section 10.7): ``C_in * min(K_h, H) * min(K_w, W)`` for conv2d, one channel's
    ``min(K_h, H) * min(K_w, W)`` for pool2d. Padding adds no source."""
    c, h, w = in_shape
    return (c if kind == "conv2d" else 1) * min(kernel[0], h) * min(kernel[1], w)


def output_shape(layer, in_shape) -> tuple[int, int, int]:
    """``(C, H, W)`` of a conv2d or pool2d layer reading a map of shape ``in_shape``."""
    c, h, w = in_shape
    channels = layer.channels if layer.kind == "conv2d" else c
    return (int(channels),
            window_outputs(h, layer.kernel[0], layer.stride[0], layer.padding[0]),
            window_outputs(w, layer.kernel[1], layer.stride[1], layer.padding[1]))


def layer_input_shapes(bundle) -> list:
    """Per layer, the shape ``(C, H, W)`` of what it reads, or None where that is flat (the
    input of a dense layer 1, or the output of a dense layer)."""
    shape = None if bundle.input_shape is None else tuple(bundle.input_shape)
    shapes = []
    for layer in bundle.layers:
        shapes.append(shape)
        shape = None if layer.kind == "dense" else output_shape(layer, shape)
    return shapes


def taps_per_position(extent: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``r[i]``: through how many kernel offsets input position ``i`` of one dimension reaches an
    output window (section 10.6); fewer near the borders and with a stride above 1."""
    taps = np.zeros(extent, dtype=np.int64)
    for window in range(window_outputs(extent, kernel, stride, padding)):
        first = window * stride - padding
        covered = np.arange(max(first, 0), min(first + kernel, extent))
        taps[covered] += 1
    return taps


def input_units(bundle, on: torch.Tensor, off: torch.Tensor):
    """Layer 1's input units from the input event counts ``[T, B, N_0]`` (section 10.2):
    ``(net, count)``, both ``[T, B, units]``: the signed input per unit (float32: an OFF event
    adds the negated weight by the XNOR rule, so ``on - off``) and the number of events per unit.
    With ``input_polarity = "channels"`` unit ``p * N_0 + i`` takes the events ``(i, p)`` as
    polarity 1: OFF events are channel 0, ON events channel 1."""
    if bundle.input_polarity == "channels":
        count = torch.cat([off, on], dim=2)
        return count.to(torch.float32), count
    return (on - off).to(torch.float32), on + off


def _int_tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64))


def synaptic_input(events: torch.Tensor, signed_weights: torch.Tensor) -> torch.Tensor:
    """Section 4 for any number of steps and samples at once: ``events[..., i]`` the net events of
    source ``i`` (ON minus OFF events, or the spikes of the layer below), ``signed_weights[i, j]``
    the weight as ``+1``/``-1``; returns ``I[..., j]``. A floating-point product of integer
    operands, exact while every partial sum stays below 2^24 in magnitude (float32)."""
    n_in = events.shape[-1]
    return (events.reshape(-1, n_in) @ signed_weights).reshape(*events.shape[:-1], signed_weights.shape[-1])


class DenseWiring:
    """A dense layer (section 4): every event reaches all ``N`` neurons."""

    kind = "dense"

    def __init__(self, layer, weights: np.ndarray):
        self.size = int(layer.size)
        self.signed = torch.from_numpy(weights.astype(np.float32) * 2 - 1)   # [N_in, N]

    def synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N_in]`` signed event counts -> int64 ``[B, N]``."""
        return synaptic_input(x, self.signed.to(x.device)).round().to(torch.int64)

    def sops(self, events: torch.Tensor) -> torch.Tensor:
        """SOPs of ``events`` ``[B, N_in]`` (events per unit): ``N`` per event."""
        return events.sum(dim=1) * self.size

    def per_neuron(self, values) -> torch.Tensor:
        return _int_tensor(values)


class Conv2dWiring:
    """A binary 2-D convolution (section 10.3); its input is ``in_shape``, weights
    ``[C_out, C_in, K_h, K_w]`` bits, bias and threshold one per output channel."""

    kind = "conv2d"

    def __init__(self, layer, weights: np.ndarray, in_shape):
        self.in_shape, self.out_shape = tuple(in_shape), output_shape(layer, in_shape)
        self.stride, self.padding = tuple(layer.stride), tuple(layer.padding)
        self.signed = torch.from_numpy(weights.astype(np.float32) * 2 - 1)   # [C_out, C_in, K_h, K_w]
        c_in, h, w = self.in_shape
        taps_h = taps_per_position(h, layer.kernel[0], self.stride[0], self.padding[0])
        taps_w = taps_per_position(w, layer.kernel[1], self.stride[1], self.padding[1])
        # SOPs of one event at each input unit (c, y, x): C_out neurons per tap it reaches.
        self.fanout = _int_tensor(np.tile(np.outer(taps_h, taps_w).reshape(-1), c_in)
                                  * self.out_shape[0])

    def synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in*H*W]`` signed event counts -> int64 ``[B, C_out*H_out*W_out]``; padding
        is zeros, exactly like silent inputs."""
        maps = x.reshape(x.shape[0], *self.in_shape)
        out = F.conv2d(maps, self.signed, stride=self.stride, padding=self.padding)
        return out.reshape(x.shape[0], -1).round().to(torch.int64)

    def sops(self, events: torch.Tensor) -> torch.Tensor:
        return (events * self.fanout).sum(dim=1)

    def per_neuron(self, values) -> torch.Tensor:
        """Per-channel bias or threshold ``[C_out]`` spread over the channel's neurons."""
        return _int_tensor(np.repeat(np.asarray(values), self.out_shape[1] * self.out_shape[2]))


class Pool2dWiring:
    """OR pooling (section 10.4): an output spikes when any unit of its window spiked."""

    kind = "pool2d"

    def __init__(self, layer, in_shape):
        self.in_shape, self.out_shape = tuple(in_shape), output_shape(layer, in_shape)
        self.kernel, self.stride = tuple(layer.kernel), tuple(layer.stride)
        self.padding = tuple(layer.padding)

    def pool(self, spikes: torch.Tensor) -> torch.Tensor:
        """``[B, C*H*W]`` 0/1 spikes -> bool ``[B, C*H_out*W_out]``."""
        maps = spikes.to(torch.float32).reshape(spikes.shape[0], *self.in_shape)
        ph, pw = self.padding
        maps = F.pad(maps, (pw, pw, ph, ph))            # padding is silent (0), never a spike
        out = F.max_pool2d(maps, self.kernel, self.stride)
        return out.reshape(spikes.shape[0], -1) > 0

    def sops(self, events: torch.Tensor) -> torch.Tensor:
        """No weights, no synaptic operations."""
        return torch.zeros(events.shape[0], dtype=torch.int64)

    def per_neuron(self, values) -> torch.Tensor:
        return _int_tensor(values)


def layer_wiring(bundle) -> list:
    """One wiring object per layer of a (valid) bundle."""
    wiring = []
    for layer, weights, in_shape in zip(bundle.layers, bundle.weights, layer_input_shapes(bundle)):
        if layer.kind == "dense":
            wiring.append(DenseWiring(layer, weights))
        elif layer.kind == "conv2d":
            wiring.append(Conv2dWiring(layer, weights, in_shape))
        else:
            wiring.append(Pool2dWiring(layer, in_shape))
    return wiring
