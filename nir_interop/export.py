"""Bundle -> NIR graph: NIR's continuous-time nodes plus the exact integer semantics as metadata.

Each layer becomes an ``Affine`` node (weights as +1/-1 floats, NIR's ``[out, in]`` shape) and a
neuron node whose forward-Euler discretisation with the stated ``dt`` is the core's update
(docs/nir.md, "Export"):

* no current state, ``leak_v = 0``: ``IF`` with ``r = 1/dt`` (``v += dt * r * I = I``);
* no current state, ``leak_v = k > 0``: ``LIF`` with ``tau = dt * 2^k`` and ``r = 2^k``
  (``v += (dt/tau) (v_leak - v) + (dt/tau) r I = -v/2^k + I``);
* current state: ``CubaLIF`` with ``tau_syn = dt * 2^kc``, ``w_in = 2^kc``, ``tau_mem = dt * 2^kv``,
  ``r = 2^kv`` and the bias carried by ``v_leak = b * 2^kv`` (the core adds the bias to ``v``,
  not to the current). A shift of 0 (no leak) is written as the state width, the slowest
  leak that is distinguishable from none within the state's range.

Convolutional bundles (docs/semantics.md section 10): a ``conv2d`` layer is a ``Conv2d`` node
(+1/-1 weights ``[C_out, C_in, K_h, K_w]``, stride, zero padding, dilation 1, groups 1) and the
same neuron node, its per-channel parameters repeated over the ``[C, H, W]`` positions; a
``pool2d`` layer (OR pooling) is ``SumPool2d`` then ``Threshold`` at 0.5 (a window fires iff it
holds a spike); a dense layer reading a map is preceded by ``Flatten`` (flat order
``c*H*W + y*W + x``, NIR's and PyTorch's).

Thresholds are written as ``v_threshold = theta - 0.5``: NIR fires on ``v > v_threshold``, the
core on ``v >= theta``, and for integer potentials both agree. Bit-exact details NIR cannot state
(arithmetic shift leak, saturation widths, subtract/none reset, fire_once, readout, time steps,
max_input_events, input encoding) travel in ``metadata`` and make the re-import exact.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import nir
import numpy as np

from bsnn.firmware_export.bundle import Bundle, conv_weight_rows, pack_weight_rows
from bsnn.firmware_export.spatial import layer_input_shapes, output_shape

# nir 1.0.8 computes a Conv2d's output shape with the kernel height along both dimensions
# (nir.ir.utils.calculate_conv_output is given weight.shape[2] only), so its type inference refuses
# graphs with non-square kernels that are correct: export_nir writes the right types and skips
# that inference, and read_nir reads such files without it (nir.read(..., type_check=False)).
NON_SQUARE_KERNELS = "nir 1.0.8 type inference uses the kernel height for both dimensions of a Conv2d"
FORMAT = "bsnn-nir"
VERSION = 1
DEFAULT_DT = 1e-3   # seconds per core time step: nominal, only ratios tau/dt matter


def weights_digest(bits: np.ndarray) -> str:
    """sha256 of a layer's weight bits as the bundle file stores them (dense ``[N_in, N_out]``;
    conv2d ``[C_out, C_in, K_h, K_w]``, stored as rows ``(c, ky, kx)`` of ``C_out`` bits): the
    import checks the graph's weights against it (NIR's float weights are not in the other
    metadata)."""
    bits = np.asarray(bits, dtype=np.uint8)
    return hashlib.sha256(pack_weight_rows(conv_weight_rows(bits) if bits.ndim == 4 else bits)).hexdigest()


def _layer_meta(bundle: Bundle, k: int) -> dict:
    layer = bundle.layers[k]
    meta = {"layer": k, "size": int(layer.size)}
    if layer.kind != "dense":
        meta.update(kind=layer.kind, kernel=list(layer.kernel), stride=list(layer.stride),
                    padding=list(layer.padding))
    if layer.kind == "conv2d":
        meta["channels"] = int(layer.channels)
    if layer.has_neurons:
        meta.update(current=bool(layer.current), leak_v=int(layer.leak_v), leak_c=int(layer.leak_c),
                    reset=layer.reset, fire_once=bool(layer.fire_once),
                    weights_sha256=weights_digest(bundle.weights[k]))
    return meta


def _neuron_node(bundle: Bundle, k: int, dt: float, out_shape):
    """The neuron node of layer ``k`` (parameters shaped as its outputs: ``[N]`` dense,
    ``[C, H, W]`` conv2d, a channel's parameter repeated over its positions), and the bias its
    synapse node adds (zeros where the neuron node carries it)."""
    layer = bundle.layers[k]
    shape = (layer.size,) if out_shape is None else tuple(out_shape)
    ones = np.ones(shape, dtype=np.float64)

    def spread(values):   # per neuron (dense) or per output channel (conv2d) -> shape
        values = np.asarray(values, dtype=np.float64)
        return values.reshape(shape) if out_shape is None else values[:, None, None] * ones
    theta = spread(bundle.threshold[k]) - 0.5
    bias = np.asarray(bundle.bias[k], dtype=np.float64)
    meta = {
        "bsnn_layer": json.dumps(_layer_meta(bundle, k), sort_keys=True),
        "bsnn_threshold": np.asarray(bundle.threshold[k], dtype=np.int64),
        "bsnn_bias": np.asarray(bundle.bias[k], dtype=np.int64),
        "reset_rule": layer.reset,
        "fire_once": bool(layer.fire_once),
        "leak_shift_v": int(layer.leak_v),
        "leak_shift_c": int(layer.leak_c),
    }
    if not layer.current:
        if layer.leak_v == 0:
            return nir.IF(r=ones / dt, v_threshold=theta, v_reset=0 * ones, metadata=meta), bias
        scale = float(2 ** layer.leak_v)
        return nir.LIF(tau=ones * dt * scale, r=ones * scale, v_leak=0 * ones, v_threshold=theta,
                       v_reset=0 * ones, metadata=meta), bias
    kv = layer.leak_v or bundle.v_width
    kc = layer.leak_c or bundle.c_width
    sv, sc = float(2 ** kv), float(2 ** kc)
    node = nir.CubaLIF(tau_syn=ones * dt * sc, tau_mem=ones * dt * sv, r=ones * sv,
                       v_leak=spread(bias) * sv, v_threshold=theta, v_reset=0 * ones, w_in=ones * sc,
                       metadata=meta)
    return node, 0 * bias


def export_nir(bundle: Bundle, *, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of ``bundle``: Input -> per layer (Affine | Conv2d) -> IF/LIF/CubaLIF, or
    SumPool2d -> Threshold (OR pooling), with Flatten before a dense layer reading a map -> Output."""
    bundle = bundle.normalized().validate("bundle")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: must be a positive number of seconds, got {dt!r}")
    dt = float(dt)
    in_shapes = layer_input_shapes(bundle)
    first = [bundle.input_units] if in_shapes[0] is None else list(in_shapes[0])
    nodes = {"input": nir.Input(input_type={"input": np.array(first)})}
    edges = []
    prev = "input"

    def add(name, node):
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    out_shape = None
    for k, (layer, in_shape) in enumerate(zip(bundle.layers, in_shapes)):
        out_shape = None if layer.kind == "dense" else output_shape(layer, in_shape)
        if layer.kind == "pool2d":   # OR pooling: a window's spike count > 0.5
            pool = nir.SumPool2d(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride),
                                 padding=np.array(layer.padding))
            pool.input_type, pool.output_type = {"input": np.array(in_shape)}, {"output": np.array(out_shape)}
            add(f"pool{k + 1}", pool)
            add(f"or{k + 1}", nir.Threshold(threshold=np.full(out_shape, 0.5),
                                            metadata={"bsnn_layer": json.dumps(_layer_meta(bundle, k),
                                                                               sort_keys=True)}))
            continue
        neuron, synapse_bias = _neuron_node(bundle, k, dt, out_shape)
        if layer.kind == "conv2d":
            conv = nir.Conv2d(input_shape=tuple(in_shape[1:]),
                              weight=bundle.weights[k].astype(np.float64) * 2.0 - 1.0,
                              stride=tuple(layer.stride), padding=tuple(layer.padding),
                              dilation=(1, 1), groups=1, bias=synapse_bias)
            conv.output_type = {"output": np.array(out_shape)}   # see NON_SQUARE_KERNELS below
            add(f"conv{k + 1}", conv)
        else:
            if in_shape is not None:    # a dense layer after a map: flat order c*H*W + y*W + x
                add(f"flat{k + 1}", nir.Flatten(input_type={"input": np.array(in_shape)},
                                                start_dim=0, end_dim=-1))
            weight = bundle.weights[k].T.astype(np.float64) * 2.0 - 1.0       # [out, in], +1/-1
            add(f"fc{k + 1}", nir.Affine(weight=weight, bias=synapse_bias))
        add(f"lif{k + 1}", neuron)
    last = [bundle.layers[-1].size] if out_shape is None else list(out_shape)
    add("output", nir.Output(output_type={"output": np.array(last)}))
    semantics = {
        "input_size": int(bundle.input_size), "time_steps": int(bundle.time_steps),
        "v_width": int(bundle.v_width), "c_width": int(bundle.c_width),
        "bias_width": int(bundle.bias_width), "readout": bundle.readout,
        "max_input_events": int(bundle.max_input_events), "encoding": bundle.encoding,
        "metadata": bundle.metadata,
    }
    if bundle.input_shape is not None:
        semantics["input_shape"] = list(bundle.input_shape)
    if bundle.input_polarity != "xnor":
        semantics["input_polarity"] = bundle.input_polarity
    if bundle.input_polarity == "channels":
        step_input = ("per step: the count of OFF events (channel 0) and of ON events (channel 1) "
                      "per input")
    else:
        step_input = "per step: count of ON events minus count of OFF events per input"
    metadata = {
        "bsnn_format": FORMAT,
        "bsnn_version": VERSION,
        "bsnn": json.dumps(semantics, sort_keys=True),
        "dt": dt,
        "discretization": "forward Euler; spike when v >= theta (v_threshold + 0.5); "
                          "leak x >> k (floor); saturating widths in bsnn",
        "time_steps": int(bundle.time_steps),
        "readout": bundle.readout,
        "input": step_input,
        "input_encoding": json.dumps(bundle.encoding),
    }
    # Every node's types are set above; NIR's own inference is skipped because it gets the output
    # shape of a Conv2d with a non-square kernel wrong (NON_SQUARE_KERNELS). The declared types
    # are still checked edge by edge.
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
    graph.check_types()
    return graph


def write_nir(bundle: Bundle, path, *, dt: float = DEFAULT_DT) -> Path:
    """Export ``bundle`` and write it as a NIR (HDF5) file; returns the path."""
    path = Path(path)
    graph = export_nir(bundle, dt=dt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)          # atomic: readers never see a half-written file
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
