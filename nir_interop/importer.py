"""NIR graph -> Bundle: bit-exact for graphs this package exported, compiled for foreign ones.

Foreign graphs (snnTorch, Norse, ...) are compiled to the core's discrete integer neuron; the
mapping and its error are documented in docs/nir.md and recorded in ``metadata.nir_import``.
"""
from __future__ import annotations

import dataclasses
import json

import nir
import numpy as np
import torch

from bsnn.firmware_export.bundle import (INPUT_POLARITIES, READOUTS, Bundle, BundleError, LayerSpec,
                                        encoding_from_v1_metadata)

from .errors import NIRImportError
from .export import FORMAT, VERSION, export_nir, weights_digest
from .graph import ChainLayer, dynamics, parse_chain, read_nir, resolve_dt

__all__ = ["import_nir", "read_nir", "leak_shift", "CALIBRATION_FACTORS"]

# Threshold factors tried per layer when calibration data is given (2^(i/4), i = -8..8).
CALIBRATION_FACTORS = tuple(float(2 ** (i / 4)) for i in range(-8, 9))
_EPS = 1e-9


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.size == 1:
        return _text(value.reshape(-1)[0])
    return value


def _is_own(graph: nir.NIRGraph) -> bool:
    return _text((graph.metadata or {}).get("bsnn_format")) == FORMAT


def import_nir(graph_or_path, *, v_width: int | None = None, c_width: int | None = None,
               bias_width: int | None = None, time_steps: int | None = None, readout: str | None = None,
               max_input_events: int | None = None, dt: float | None = None, reset="auto",
               discretization: str = "euler", calibration=None, encoding: dict | None = None,
               input_polarity: str | None = None, use_metadata: bool = True) -> Bundle:
    """Compile a NIR graph (object or file path) to a validated :class:`Bundle`.

    A graph written by :func:`bsnn.nir_interop.export_nir` is rebuilt bit-exactly from its metadata
    (arguments given must agree with it). Any other graph (or ``use_metadata=False``) is compiled:

    * ``v_width``, ``c_width`` (default 16), ``bias_width`` (default ``v_width``): state widths;
    * ``time_steps``: T (required unless the graph's metadata states it);
    * ``readout`` (default ``spike_count``), ``max_input_events`` (default N_0: one event per
      input per step), ``encoding`` (default ``{"kind": "rate"}``, the bundle's input encoding);
    * ``dt``: seconds per step (default: graph metadata ``dt``, else 1e-4 s as snnTorch assumes);
    * ``reset``: ``auto`` (the node's ``reset_rule`` hint, else NIR's reset to ``v_reset = 0``),
      or ``zero``/``subtract``/``none``, or a dict ``{neuron_node_name: rule}``;
    * ``discretization``: ``euler`` (``beta = 1 - dt/tau``, what snnTorch and Norse use) or
      ``exp`` (``beta = exp(-dt/tau)``, zero-order hold);
    * ``input_polarity``: how the bundle's layer 1 reads input events (default ``xnor``: one
      signed value per input; ``channels``: the graph's input is two channels, OFF then ON, of
      ``N_0`` inputs each; docs/semantics.md section 10.2);
    * ``calibration``: optional input counts ``on`` or ``(on, off)`` [T, B, N_0]; each layer's
      thresholds are then scaled by the factor (from :data:`CALIBRATION_FACTORS`) whose spike rate
      best matches the float reference simulation of the graph.

    Raises :class:`NIRImportError` (one line naming the node) for what the core cannot express.
    """
    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_nir(graph_or_path)
    if use_metadata and _is_own(graph):
        return _import_own(graph, dict(v_width=v_width, c_width=c_width, bias_width=bias_width,
                                       time_steps=time_steps, readout=readout,
                                       max_input_events=max_input_events, input_polarity=input_polarity))
    return _import_foreign(graph, v_width=v_width, c_width=c_width, bias_width=bias_width,
                           time_steps=time_steps, readout=readout, max_input_events=max_input_events,
                           dt=dt, reset=reset, discretization=discretization, calibration=calibration,
                           encoding=encoding, input_polarity=input_polarity)


def _validated(bundle: Bundle) -> Bundle:
    try:
        return bundle.normalized().validate("nir import")
    except BundleError as exc:
        raise NIRImportError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Graphs this package exported: the metadata is authoritative, the NIR fields are cross-checked.

# The keys (and types) of the metadata export_nir writes; anything else is a tampered graph.
_SEMANTICS_KEYS = {"input_size": int, "time_steps": int, "v_width": int, "c_width": int,
                   "bias_width": int, "readout": str, "max_input_events": int, "metadata": dict}
# ``encoding``: written by exports of schema-2 bundles (an export of a schema-1 bundle has it in
# ``metadata``); ``input_shape``, ``input_polarity``: by exports of convolutional bundles and of
# bundles with one input channel per polarity (docs/semantics.md section 10).
_SEMANTICS_OPTIONAL = {"encoding": dict, "input_shape": list, "input_polarity": str}
_LAYER_KEYS = {"layer": int, "size": int, "current": bool, "leak_v": int, "leak_c": int,
               "reset": str, "fire_once": bool, "weights_sha256": str}
_SPATIAL_KEYS = {"kind": str, "kernel": list, "stride": list, "padding": list}   # conv2d, pool2d
_RECOMPILE = "pass use_metadata=False (--recompile) to compile it as a foreign graph"


def _metadata_json(value, where: str, keys: dict, optional: dict | None = None) -> dict:
    """One JSON object of the metadata, with exactly ``keys`` (and any of ``optional``) of the
    stated types."""
    optional = optional or {}
    try:
        obj = json.loads(_text(value))
    except (TypeError, ValueError, RecursionError) as exc:   # JSONDecodeError is a ValueError
        raise NIRImportError(f"{where}: missing or malformed ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise NIRImportError(f"{where}: must be a JSON object")
    missing, unknown = sorted(set(keys) - set(obj)), sorted(set(obj) - set(keys) - set(optional))
    if missing or unknown:
        raise NIRImportError(f"{where}: " + ("; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) +
            ([f"unknown {', '.join(unknown)}"] if unknown else []))) + f"; {_RECOMPILE}")
    for key, kind in {**keys, **{k: t for k, t in optional.items() if k in obj}}.items():
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise NIRImportError(f"{where}: {key}: must be {kind.__name__}, got {value!r:.40}")
    return obj


def _metadata_ints(value, where: str, size: int) -> np.ndarray:
    """An integer array of ``size`` values from node metadata (floats or text are refused)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.size != size:
        raise NIRImportError(f"{where}: must be {size} integers, got {arr.dtype} x {arr.size}")
    return arr.astype(np.int64).reshape(-1)


def _import_own(graph: nir.NIRGraph, given: dict) -> Bundle:
    meta = graph.metadata
    try:
        version = int(np.asarray(meta.get("bsnn_version", -1)).reshape(-1)[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        raise NIRImportError(f"graph: metadata.bsnn_version: malformed ({meta.get('bsnn_version')!r:.40})") from None
    if version != VERSION:
        raise NIRImportError(f"graph: bsnn_version {version} is not supported (this tool reads {VERSION})")
    sem = _metadata_json(meta.get("bsnn"), "graph: metadata.bsnn", _SEMANTICS_KEYS, _SEMANTICS_OPTIONAL)
    for key, value in given.items():
        exported = sem.get(key, "xnor" if key == "input_polarity" else None)
        if value is not None and value != exported:
            raise NIRImportError(f"graph: {key}={value} differs from the exported {key}={exported} "
                                 f"(pass use_metadata=False to recompile the graph)")
    metadata = sem.get("metadata", {})
    if "encoding" in sem:
        encoding = sem["encoding"]
    else:   # exported from a schema version 1 bundle: the encoding was in its metadata
        try:
            encoding, metadata = encoding_from_v1_metadata(metadata, sem["input_size"], sem["time_steps"],
                                                           "graph: metadata.bsnn")
        except BundleError as exc:
            raise NIRImportError(str(exc)) from None
    input_shape = tuple(sem["input_shape"]) if "input_shape" in sem else None
    input_polarity = sem.get("input_polarity", "xnor")
    parsed = parse_chain(graph)
    chain = parsed.layers
    units = sem["input_size"] * (2 if input_polarity == "channels" else 1)
    if parsed.units != units:
        raise NIRImportError(f"graph: input of {parsed.units} values differs from metadata input_size "
                             f"{sem['input_size']} ({input_polarity})")
    layers, weights, bias, threshold = [], [], [], []
    for k, layer in enumerate(chain):
        nm = layer.node.metadata or {}
        where = f"node {layer.neuron!r}: metadata"
        kind = layer.kind
        keys = dict(_LAYER_KEYS) if kind != "pool2d" else {"layer": int, "size": int}
        if kind != "dense":
            keys.update(_SPATIAL_KEYS)
        if kind == "conv2d":
            keys["channels"] = int
        lm = _metadata_json(nm.get("bsnn_layer"), f"{where}.bsnn_layer", keys)
        if lm["layer"] != k or lm["size"] != layer.size or lm.get("kind", "dense") != kind:
            raise NIRImportError(f"node {layer.neuron!r}: metadata says {lm.get('kind', 'dense')} layer "
                                 f"{lm['layer']} of {lm['size']} outputs, found {kind} layer {k} of "
                                 f"{layer.size}")
        if kind != "dense":
            geometry = {name: tuple(lm[name]) for name in ("kernel", "stride", "padding")}
            found = {"kernel": layer.kernel, "stride": layer.stride, "padding": layer.padding}
            if geometry != found:
                raise NIRImportError(f"node {layer.synapse!r}: kernel, stride, padding {found} disagree "
                                     f"with the bsnn metadata {geometry}; {_RECOMPILE}")
        if kind == "pool2d":
            layers.append(LayerSpec.pool2d(layer.in_shape, **geometry))
            weights.append(np.zeros(0, dtype=np.uint8))
            bias.append(np.zeros(0, dtype=np.int64))
            threshold.append(np.zeros(0, dtype=np.int64))
            continue
        n_params = lm["channels"] if kind == "conv2d" else layer.size
        theta = _metadata_ints(nm.get("bsnn_threshold"), f"{where}.bsnn_threshold", n_params)
        b = _metadata_ints(nm.get("bsnn_bias"), f"{where}.bsnn_bias", n_params)
        w = layer.weight
        if not np.all(np.abs(w) == 1):
            raise NIRImportError(f"node {layer.synapse!r}: weights must be +1/-1 in a bsnn export; "
                                 f"{_RECOMPILE}")
        bits = (w > 0).astype(np.uint8) if kind == "conv2d" else (w.T > 0).astype(np.uint8)
        if weights_digest(bits) != lm["weights_sha256"]:
            raise NIRImportError(f"node {layer.synapse!r}: weights disagree with the bsnn metadata "
                                 f"(weights_sha256; graph edited after export?); {_RECOMPILE}")
        modes = dict(current=lm["current"], leak_v=lm["leak_v"], leak_c=lm["leak_c"], reset=lm["reset"],
                     fire_once=lm["fire_once"])
        if kind == "conv2d":
            layers.append(LayerSpec.conv2d(layer.in_shape, lm["channels"], **geometry, **modes))
        else:
            layers.append(LayerSpec(size=layer.size, **modes))
        weights.append(bits)
        bias.append(b)
        threshold.append(theta)
    bundle = _validated(Bundle(
        input_size=sem["input_size"], time_steps=sem["time_steps"], layers=layers, weights=weights,
        bias=bias, threshold=threshold, v_width=sem["v_width"], c_width=sem["c_width"],
        bias_width=sem["bias_width"], readout=sem["readout"], max_input_events=sem["max_input_events"],
        encoding=encoding, metadata=metadata, input_shape=input_shape, input_polarity=input_polarity))
    _cross_check(graph, parsed, bundle)
    return bundle


_SKIPPED_FIELDS = ("input_type", "output_type", "metadata")


def _cross_check(graph: nir.NIRGraph, parsed, bundle: Bundle):
    """Every NIR field must be what exporting the bundle rebuilt from the metadata writes (a
    graph edited after export is refused, naming the node and the fields): the same node types in
    the same order, and equal values in every field."""
    dt, _ = resolve_dt(graph)
    expected = export_nir(bundle, dt=dt)
    want_order = [n for n, node in expected.nodes.items() if not isinstance(node, (nir.Input, nir.Output))]
    if len(want_order) != len(parsed.order):
        raise NIRImportError(f"graph: {len(parsed.order)} nodes between input and output, the bsnn "
                             f"metadata gives {len(want_order)} ({', '.join(want_order)}); {_RECOMPILE}")
    for name, want_name in zip(parsed.order, want_order):
        node, want = graph.nodes[name], expected.nodes[want_name]
        if type(node) is not type(want):
            raise NIRImportError(f"node {name!r}: {type(node).__name__} does not match its bsnn "
                                 f"metadata (expected {type(want).__name__}); {_RECOMPILE}")
        problems = [f.name for f in dataclasses.fields(want)
                    if f.name not in _SKIPPED_FIELDS
                    and not _same_values(getattr(node, f.name), getattr(want, f.name))]
        if problems:
            raise NIRImportError(f"node {name!r}: {', '.join(problems)} disagree with the bsnn "
                                 f"metadata (graph edited after export?); {_RECOMPILE}")


def _same_values(a, b) -> bool:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    return a.shape == b.shape and bool(np.array_equal(a, b))


# ---------------------------------------------------------------------------------------------
# Foreign graphs: continuous-time parameters -> the core's integer neuron.

def leak_shift(factor: np.ndarray, width: int) -> tuple[int, float]:
    """The shift k (0 = no leak) whose per-step factor ``1 - 2^-k`` (1 for k = 0) is closest to
    ``factor`` (mean absolute error over the layer's neurons); returns (k, max abs error)."""
    candidates = [(0, 1.0)] + [(k, 1.0 - 2.0 ** -k) for k in range(1, width)]
    errs = [float(np.mean(np.abs(q - factor))) for _, q in candidates]
    k, q = candidates[int(np.argmin(errs))]
    return k, float(np.max(np.abs(q - factor)))


def _stats(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}


def _graph_int(graph, key):
    value = (graph.metadata or {}).get(key)
    return None if value is None else int(np.asarray(value).reshape(-1)[0])


def _per_channel(layer: ChainLayer, what: str, values: np.ndarray) -> np.ndarray:
    """A conv2d layer's per-neuron values ``[C*H*W]`` as one per output channel ``[C]``; refused
    unless every position of a channel has the same value (the core's parameters are per
    channel, docs/semantics.md section 10.3)."""
    per = values.reshape(layer.channels, -1)
    spread = np.ptp(per, axis=1)
    tol = 1e-9 * np.maximum(1.0, np.abs(per).max(axis=1))
    if np.any(spread > tol):
        c = int(np.argmax(spread > tol))
        raise NIRImportError(f"node {layer.neuron!r}: {what} differs between the positions of output "
                             f"channel {c} ({float(per[c].min()):g} .. {float(per[c].max()):g}); the "
                             f"core has one per output channel")
    return per[:, 0].copy()


def _import_foreign(graph, *, v_width, c_width, bias_width, time_steps, readout, max_input_events, dt,
                    reset, discretization, calibration, encoding, input_polarity=None) -> Bundle:
    parsed = parse_chain(graph)
    chain = parsed.layers
    input_polarity = "xnor" if input_polarity is None else input_polarity
    if input_polarity not in INPUT_POLARITIES:
        raise NIRImportError(f"input_polarity: must be one of {', '.join(INPUT_POLARITIES)}, "
                             f"got {input_polarity!r}")
    if input_polarity == "channels":
        if parsed.units % 2 or (parsed.input_shape is not None and parsed.input_shape[0] != 2):
            shown = list(parsed.input_shape) if parsed.input_shape is not None else [parsed.units]
            raise NIRImportError(f"input_polarity: channels needs an input of two channels (OFF, ON), "
                                 f"got shape {shown}")
        input_size = parsed.units // 2
    else:
        input_size = parsed.units
    dt, dt_source = resolve_dt(graph, dt)
    v_width = 16 if v_width is None else v_width
    c_width = 16 if c_width is None else c_width
    bias_width = v_width if bias_width is None else bias_width
    if time_steps is None:
        time_steps = _graph_int(graph, "time_steps")
        if time_steps is None:
            raise NIRImportError("graph: time_steps is required (NIR graphs do not state how many "
                                 "steps an inference runs)")
    if readout is None:
        hint = _text((graph.metadata or {}).get("readout"))
        readout = hint if hint in READOUTS else "spike_count"
    max_input_events = input_size if max_input_events is None else max_input_events
    for name, value in (("v_width", v_width), ("c_width", c_width), ("bias_width", bias_width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 2 <= value <= 32:
            raise NIRImportError(f"{name}: must be an integer in [2, 32], got {value!r}")
    vmax = (1 << (v_width - 1)) - 1
    bmin, bmax = -(1 << (bias_width - 1)), (1 << (bias_width - 1)) - 1

    layers, weights, biases, thetas, scaled_thetas, reports = [], [], [], [], [], []
    for layer in chain:
        if layer.kind == "pool2d":
            layers.append(LayerSpec.pool2d(layer.in_shape, layer.kernel, layer.stride, layer.padding))
            weights.append(np.zeros(0, dtype=np.uint8))
            biases.append(np.zeros(0, dtype=np.int64))
            thetas.append(np.zeros(0, dtype=np.int64))
            scaled_thetas.append(None)
            reports.append({"synapse": layer.synapse, "neuron": layer.neuron, "type": "pool2d",
                            "kind": "pool2d", "pool": type(graph.nodes[layer.synapse]).__name__,
                            "kernel": list(layer.kernel), "stride": list(layer.stride),
                            "padding": list(layer.padding)})
            continue
        conv = layer.kind == "conv2d"
        d = dynamics(layer, dt, discretization, reset)
        w = layer.weight
        # Per output unit of the synapse (a dense neuron, a conv2d output channel): the scale
        # s = mean |w| folded into threshold and bias; spread per neuron for the arithmetic below.
        s_unit = np.abs(w).reshape(w.shape[0], -1).mean(axis=1)
        dead = s_unit == 0
        s_unit = np.where(dead, 1.0, s_unit)
        s = np.repeat(s_unit, layer.size // w.shape[0])
        gain = d.g_in * s if not d.current else d.g_in * d.g_cv * s   # one integer step of v, in v units
        if np.any(gain <= 0):
            raise NIRImportError(f"node {layer.neuron!r}: input gain must be > 0 (r, w_in and tau "
                                 f"give {float(gain.min()):g})")
        k_v, err_v = leak_shift(d.beta, v_width)
        report = {"synapse": layer.synapse, "neuron": layer.neuron, "type": d.kind, "kind": layer.kind,
                  "reset": d.reset, "beta": _stats(d.beta), "leak_v": k_v,
                  "beta_quantized": 1.0 if k_v == 0 else 1 - 2.0 ** -k_v, "beta_abs_error_max": err_v}
        if layer.folded:
            report["folded_pools"] = list(layer.folded)
        k_c = 0
        if d.current:
            k_c, err_c = leak_shift(d.alpha, c_width)
            report.update({"alpha": _stats(d.alpha), "leak_c": k_c,
                           "alpha_quantized": 1.0 if k_c == 0 else 1 - 2.0 ** -k_c, "alpha_abs_error_max": err_c})
            has_bias = layer.bias != 0
            if np.any(has_bias & (d.alpha >= 1)):
                raise NIRImportError(f"node {layer.synapse!r}: a bias into a non-leaky synaptic current "
                                     f"(tau_syn -> inf) grows without bound; the core cannot express it")
            steady = np.where(has_bias, layer.bias / np.where(has_bias, 1 - d.alpha, 1.0), 0.0)
            bias_real = steady / s + d.drive / gain
        else:
            bias_real = layer.bias / s + d.drive / gain
        theta_real = d.theta / gain                              # NIR fires on v > theta
        if conv:   # one threshold and bias per output channel
            theta_real = _per_channel(layer, "v_threshold / input gain", theta_real)
            bias_real = _per_channel(layer, "bias / input gain", bias_real)
        theta_int = np.floor(theta_real + _EPS) + 1              # integer v > x  <=>  v >= floor(x) + 1
        bias_int = np.round(bias_real)
        binarized = np.where(w >= 0, 1.0, -1.0)
        scale = s_unit.reshape(-1, *([1] * (w.ndim - 1)))
        rel = np.linalg.norm(w - scale * binarized) / max(np.linalg.norm(w), 1e-300)
        report.update({
            "weight_scale": _stats(s_unit), "weight_binarization_rel_error": float(rel),
            ("zero_weight_channels" if conv else "zero_weight_rows"): int(dead.sum()),
            "threshold_real": _stats(theta_real),
            "threshold_clipped": int(((theta_int < 1) | (theta_int > vmax)).sum()),
            "bias_real": _stats(bias_real), "bias_rounding_error_max": float(np.max(np.abs(bias_int - bias_real))),
            "bias_clipped": int(((bias_int < bmin) | (bias_int > bmax)).sum()),
            "fire_once": d.fire_once,
        })
        modes = dict(current=d.current, leak_v=k_v, leak_c=k_c, reset=d.reset, fire_once=d.fire_once)
        if conv:
            layers.append(LayerSpec.conv2d(layer.in_shape, layer.channels, layer.kernel, layer.stride,
                                           layer.padding, **modes))
            weights.append((w >= 0).astype(np.uint8))
        else:
            layers.append(LayerSpec(size=layer.size, **modes))
            weights.append((w.T >= 0).astype(np.uint8))
        biases.append(np.clip(bias_int, bmin, bmax).astype(np.int64))
        thetas.append(np.clip(theta_int, 1, vmax).astype(np.int64))
        scaled_thetas.append(theta_real)
        reports.append(report)

    metadata = {
        "origin": "bsnn.nir_interop.import_nir (compiled from a foreign NIR graph)",
        "nir_import": {"dt": dt, "dt_source": dt_source, "discretization": discretization,
                       "nir_version": getattr(nir, "__version__", "?"), "layers": reports},
    }
    bundle = _validated(Bundle(
        input_size=input_size, time_steps=int(time_steps), layers=layers, weights=weights, bias=biases,
        threshold=thetas, v_width=int(v_width), c_width=int(c_width), bias_width=int(bias_width),
        readout=readout, max_input_events=int(max_input_events),
        encoding=dict(encoding) if encoding else {"kind": "rate"}, metadata=metadata,
        input_shape=parsed.input_shape, input_polarity=input_polarity))
    if calibration is not None:
        _calibrate(bundle, graph, scaled_thetas, calibration, dt=dt, discretization=discretization, reset=reset)
    return bundle


def _calibrate(bundle: Bundle, graph, scaled_thetas, calibration, *, dt, discretization, reset):
    """Per layer, in order: scale the thresholds by the factor whose mean spike rate on the
    calibration inputs best matches the float reference simulation of the NIR graph."""
    from bsnn.firmware_export.golden import run_golden

    from .reference import simulate_nir

    on, off = calibration if isinstance(calibration, (tuple, list)) else (calibration, None)
    if not isinstance(on, torch.Tensor) or on.dim() != 3 or on.shape[0] != bundle.time_steps:
        raise NIRImportError(f"calibration: must be input counts [T={bundle.time_steps}, B, N0] (or a pair "
                             f"on, off), got {getattr(on, 'shape', type(on).__name__)}")
    ref = simulate_nir(graph, on, off, dt=dt, discretization=discretization, reset=reset,
                       readout=bundle.readout, input_polarity=bundle.input_polarity)
    vmax = (1 << (bundle.v_width - 1)) - 1
    chosen = []
    for k, theta_real in enumerate(scaled_thetas):
        if theta_real is None:        # pool2d: no neurons, nothing to calibrate
            chosen.append(None)
            continue
        target = float(ref.spikes[k].mean())
        best = None
        for f in sorted(CALIBRATION_FACTORS, key=lambda x: abs(np.log(x))):   # ties: closest to 1
            bundle.threshold[k] = np.clip(np.floor(f * theta_real + _EPS) + 1, 1, vmax).astype(np.int64)
            sub = Bundle(**{**bundle.__dict__, "layers": bundle.layers[:k + 1],
                            "weights": bundle.weights[:k + 1], "bias": bundle.bias[:k + 1],
                            "threshold": bundle.threshold[:k + 1]})
            rate = float(run_golden(sub, on.to(torch.int64), None if off is None else off.to(torch.int64))
                         .spikes[k].double().mean())
            err = abs(rate - target)
            if best is None or err < best[0] - 1e-12:
                best = (err, f, rate)
        err, f, rate = best
        bundle.threshold[k] = np.clip(np.floor(f * theta_real + _EPS) + 1, 1, vmax).astype(np.int64)
        chosen.append({"factor": f, "rate_float": target, "rate_int": rate})
    bundle.metadata["nir_import"]["calibration"] = {"samples": int(on.shape[1]), "layers": chosen}
    _validated(bundle)
