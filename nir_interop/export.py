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

from bsnn.firmware_export.bundle import Bundle, pack_weight_rows

FORMAT = "bsnn-nir"
VERSION = 1
DEFAULT_DT = 1e-3   # seconds per core time step: nominal, only ratios tau/dt matter


def weights_digest(bits: np.ndarray) -> str:
    """sha256 of a layer's weight bits ``[N_in, N_out]`` as the bundle stores them: the import
    checks the graph's weights against it (NIR's float weights are not in the other metadata)."""
    return hashlib.sha256(pack_weight_rows(np.asarray(bits, dtype=np.uint8))).hexdigest()


def _layer_meta(bundle: Bundle, k: int) -> dict:
    layer = bundle.layers[k]
    return {"layer": k, "size": int(layer.size), "current": bool(layer.current),
            "leak_v": int(layer.leak_v), "leak_c": int(layer.leak_c), "reset": layer.reset,
            "fire_once": bool(layer.fire_once), "weights_sha256": weights_digest(bundle.weights[k])}


def _neuron_node(bundle: Bundle, k: int, dt: float):
    layer = bundle.layers[k]
    n = layer.size
    ones = np.ones(n, dtype=np.float64)
    theta = bundle.threshold[k].astype(np.float64) - 0.5
    bias = bundle.bias[k].astype(np.float64)
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
                       v_leak=bias * sv, v_threshold=theta, v_reset=0 * ones, w_in=ones * sc,
                       metadata=meta)
    return node, 0 * bias


def export_nir(bundle: Bundle, *, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of ``bundle``: Input -> (Affine -> IF/LIF/CubaLIF) per layer -> Output."""
    bundle = bundle.normalized().validate("bundle").require_dense("NIR export")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: must be a positive number of seconds, got {dt!r}")
    dt = float(dt)
    nodes = {"input": nir.Input(input_type={"input": np.array([bundle.input_size])})}
    edges = []
    prev = "input"
    for k in range(len(bundle.layers)):
        neuron, affine_bias = _neuron_node(bundle, k, dt)
        weight = bundle.weights[k].T.astype(np.float64) * 2.0 - 1.0       # [out, in], +1/-1
        fc, lif = f"fc{k + 1}", f"lif{k + 1}"
        nodes[fc] = nir.Affine(weight=weight, bias=affine_bias)
        nodes[lif] = neuron
        edges += [(prev, fc), (fc, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array([bundle.layers[-1].size])})
    edges.append((prev, "output"))
    semantics = {
        "input_size": int(bundle.input_size), "time_steps": int(bundle.time_steps),
        "v_width": int(bundle.v_width), "c_width": int(bundle.c_width),
        "bias_width": int(bundle.bias_width), "readout": bundle.readout,
        "max_input_events": int(bundle.max_input_events), "encoding": bundle.encoding,
        "metadata": bundle.metadata,
    }
    metadata = {
        "bsnn_format": FORMAT,
        "bsnn_version": VERSION,
        "bsnn": json.dumps(semantics, sort_keys=True),
        "dt": dt,
        "discretization": "forward Euler; spike when v >= theta (v_threshold + 0.5); "
                          "leak x >> k (floor); saturating widths in bsnn",
        "time_steps": int(bundle.time_steps),
        "readout": bundle.readout,
        "input": "per step: count of ON events minus count of OFF events per input",
        "input_encoding": json.dumps(bundle.encoding),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


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
