"""The model bundle: the file contract between training and hardware (see docs/model-format.md)."""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .encoding import DEFAULT_ENCODING, EncodingError, complete_encoding
from .errors import BSNNError
from .outputs import (InputFileError, check_folder_output, only_files, output_folder,
                      read_regular_file, write_file, write_staged)
from .spatial import output_shape, window_fan_in

SCHEMA_VERSION = 2                # what save_bundle writes
READABLE_VERSIONS = (1, 2)        # version 1: the encoding lived in metadata.encoding (see below)
FORMAT_NAME = "bsnn-bundle"
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"   # sha256sum format, so that no byte of the bundle goes unchecked
RESETS = ("subtract", "zero", "none")
READOUTS = ("spike_count", "potential", "first_spike")
LAYER_KINDS = ("dense", "conv2d", "pool2d")      # docs/semantics.md section 10
INPUT_POLARITIES = ("xnor", "channels")         # how layer 1 reads an input event's polarity
SPATIAL_SECTION = "docs/semantics.md section 10"

# Limits the hardware's fixed fields impose (16-bit neuron index and step fields).
MAX_NEURONS = 65535
MAX_TIME_STEPS = 65535
MAX_INPUT_EVENTS = (1 << 24) - 1  # keeps the golden model's float32 sums exact
MIN_WIDTH, MAX_WIDTH = 2, 32
# Read limits: the manifest (training history included) is far below this; data files are read up
# to the size their layer's shape gives.
MAX_MANIFEST_BYTES = 64 << 20


class BundleError(BSNNError, ValueError):
    """A bundle (or a value meant for one) is invalid. The message is one line:
    ``<file>: <field>: <problem>``."""


def _fail(where, field_name, problem):
    raise BundleError(f"{where}: {field_name}: {problem}")


@dataclass(frozen=True)
class LayerSpec:
    """Per-layer configuration (docs/semantics.md sections 1 and 10).

    ``size`` is the number of outputs (neurons; a pool2d layer's pooled positions). A ``dense``
    layer leaves the spatial fields None; ``conv2d`` sets ``channels`` (C_out), ``kernel``,
    ``stride`` and ``padding`` as ``(h, w)`` pairs; ``pool2d`` sets the three pairs and has no
    neurons, so its neuron fields keep their defaults. :meth:`conv2d` and :meth:`pool2d` derive
    ``size`` from the shape they read."""
    size: int
    current: bool = False
    leak_v: int = 0
    leak_c: int = 0
    reset: str = "subtract"
    fire_once: bool = False
    kind: str = "dense"
    channels: int | None = None
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None

    @classmethod
    def conv2d(cls, in_shape, channels: int, kernel, stride=1, padding=0, **neuron) -> "LayerSpec":
        """A convolution reading a ``(C, H, W)`` map; ``kernel``, ``stride``, ``padding``: an int
        or an ``(h, w)`` pair; ``neuron``: current, leak_v, leak_c, reset, fire_once."""
        spec = cls(size=0, kind="conv2d", channels=int(channels), kernel=_pair(kernel),
                   stride=_pair(stride), padding=_pair(padding), **neuron)
        return replace(spec, size=int(np.prod(output_shape(spec, in_shape))))

    @classmethod
    def pool2d(cls, in_shape, kernel, stride=None, padding=0) -> "LayerSpec":
        """OR pooling of a ``(C, H, W)`` map; the stride defaults to the kernel."""
        spec = cls(size=0, kind="pool2d", kernel=_pair(kernel),
                   stride=_pair(kernel if stride is None else stride), padding=_pair(padding))
        return replace(spec, size=int(np.prod(output_shape(spec, in_shape))))

    @property
    def has_neurons(self) -> bool:
        return self.kind != "pool2d"


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    return tuple(int(v) for v in value)


@dataclass
class Bundle:
    """An integer, hardware-exact BSNN. Weights are 0/1 (1 means +1): ``[N_in, N_out]`` for a
    dense layer, ``[C_out, C_in, K_h, K_w]`` for a conv2d layer, whose bias and threshold are one
    per output channel ``[C_out]``; a pool2d layer has none (empty arrays, shape ``(0,)``)."""
    input_size: int
    time_steps: int
    layers: list[LayerSpec]
    weights: list[np.ndarray]
    bias: list[np.ndarray]
    threshold: list[np.ndarray]
    v_width: int = 16
    c_width: int = 16
    bias_width: int = 16
    readout: str = "spike_count"
    max_input_events: int = 1024
    encoding: dict = field(default_factory=lambda: dict(DEFAULT_ENCODING))  # firmware_export/encoding.py
    metadata: dict = field(default_factory=dict)
    input_shape: tuple[int, int, int] | None = None   # (C, H, W) read by a conv2d layer 1
    input_polarity: str = "xnor"                       # "channels": docs/semantics.md section 10.2

    @property
    def sizes(self) -> list[int]:
        return [self.input_size] + [layer.size for layer in self.layers]

    @property
    def input_units(self) -> int:
        """What layer 1 reads: the ``N_0`` inputs, or ``2 N_0`` with one channel per polarity."""
        return self.input_size * (2 if self.input_polarity == "channels" else 1)

    @property
    def is_dense(self) -> bool:
        """Dense layers only, reading the input by the XNOR rule: what the core runs."""
        return self.input_polarity == "xnor" and all(layer.kind == "dense" for layer in self.layers)

    def require_dense(self, what: str) -> "Bundle":
        """Raise a one-line BundleError unless the core can run this bundle (``what`` names the
        tool that needs it): convolution, pooling and polarity channels exist only in the
        semantics, the golden model and ``bsnn eval`` (golden engine) so far."""
        for k, layer in enumerate(self.layers):
            if layer.kind != "dense":
                raise BundleError(f"{what}: layers[{k}].kind: {layer.kind}: convolution and pooling "
                                  f"layers are not supported by the core yet ({SPATIAL_SECTION})")
        if self.input_polarity != "xnor":
            raise BundleError(f"{what}: input_polarity: {self.input_polarity}: one input channel per "
                              f"polarity is not supported by the core yet ({SPATIAL_SECTION})")
        return self

    def validate(self, where: str = "bundle") -> "Bundle":
        """Check every field against docs/semantics.md; raise BundleError naming the field."""
        _check_int(where, "input_size", self.input_size, 1, MAX_NEURONS)
        _check_int(where, "time_steps", self.time_steps, 1, MAX_TIME_STEPS)
        for name, key in (("v_width", "v"), ("c_width", "c"), ("bias_width", "bias")):
            _check_int(where, f"widths.{key}", getattr(self, name), MIN_WIDTH, MAX_WIDTH)
        if self.readout not in READOUTS:
            _fail(where, "readout", f"must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        _check_int(where, "max_input_events", self.max_input_events, 1, MAX_INPUT_EVENTS)
        if not isinstance(self.layers, list) or not self.layers:
            _fail(where, "layers", "must be a non-empty list")
        n = len(self.layers)
        for name in ("weights", "bias", "threshold"):
            if not isinstance(getattr(self, name), list) or len(getattr(self, name)) != n:
                _fail(where, name, f"must be a list of {n} arrays (one per layer)")
        vmax = (1 << (self.v_width - 1)) - 1
        bmin, bmax = -(1 << (self.bias_width - 1)), (1 << (self.bias_width - 1)) - 1
        inputs = _layer_inputs(where, self.layers, self.input_size, self.input_shape,
                               self.input_polarity)
        for k, (layer, (n_in, in_shape)) in enumerate(zip(self.layers, inputs)):
            p = f"layers[{k}]"
            if not layer.has_neurons:
                for name in ("weights", "bias", "threshold"):
                    arr = getattr(self, name)[k]
                    if not isinstance(arr, np.ndarray) or arr.shape != (0,):
                        _fail(where, f"{p}.{name}", f"a pool2d layer has none: must be an empty "
                              f"array, got shape {getattr(arr, 'shape', type(arr).__name__)}")
                continue
            _check_bool(where, f"{p}.current", layer.current)
            _check_bool(where, f"{p}.fire_once", layer.fire_once)
            _check_int(where, f"{p}.leak_v", layer.leak_v, 0, self.v_width - 1)
            _check_int(where, f"{p}.leak_c", layer.leak_c, 0, self.c_width - 1)
            if layer.reset not in RESETS:
                _fail(where, f"{p}.reset", f"must be one of {', '.join(RESETS)}, got {layer.reset!r}")
            if layer.kind == "dense":
                w_shape, n_params = (n_in, layer.size), layer.size
            else:   # conv2d: per output channel
                w_shape, n_params = (layer.channels, in_shape[0], *layer.kernel), layer.channels
            w = self.weights[k]
            if not isinstance(w, np.ndarray) or w.shape != w_shape:
                _fail(where, f"{p}.weights", f"shape must be ({', '.join(map(str, w_shape))}), got "
                      f"{getattr(w, 'shape', type(w).__name__)}")
            if w.size and not np.isin(w, (0, 1)).all():
                _fail(where, f"{p}.weights", "must be binary (0 for -1, 1 for +1)")
            _check_vector(where, f"{p}.bias", self.bias[k], n_params, bmin, bmax)
            _check_vector(where, f"{p}.threshold", self.threshold[k], n_params, 1, vmax)
        spec = _check_encoding(where, self.encoding, self.input_size)
        if spec["kind"] == "events" and self.input_shape is not None \
                and tuple(self.input_shape[1:]) != (spec["height"], spec["width"]):
            _fail(where, "input_shape", f"H x W = {self.input_shape[1]} x {self.input_shape[2]} "
                  f"must be the sensor's height x width = {spec['height']} x {spec['width']}")
        if not isinstance(self.metadata, dict):
            _fail(where, "metadata", "must be a JSON object")
        if "encoding" in self.metadata:
            _fail(where, "metadata.encoding", "the encoding is the top-level field encoding "
                  "since schema version 2, not metadata")
        return self

    def normalized(self) -> "Bundle":
        """A copy with canonical types (uint8 weights, int64 parameters, pool2d layers' None as
        empty arrays, shapes and windows as tuples of ints)."""
        return replace(
            self,
            layers=[_canonical_layer(layer) for layer in self.layers],
            weights=[_array(w, np.uint8) for w in self.weights],
            bias=[_array(b, np.int64) for b in self.bias],
            threshold=[_array(t, np.int64) for t in self.threshold],
            encoding=_completed(self.encoding),
            metadata=dict(self.metadata),
            input_shape=_int_tuple(self.input_shape),
        )

    def same_as(self, other: "Bundle") -> bool:
        """True when both bundles define the same network and input encoding (metadata ignored)."""
        scalars = ("input_size", "time_steps", "v_width", "c_width", "bias_width", "readout",
                   "max_input_events", "input_polarity")
        if any(getattr(self, s) != getattr(other, s) for s in scalars):
            return False
        if _int_tuple(self.input_shape) != _int_tuple(other.input_shape):
            return False
        if [_canonical_layer(a) for a in self.layers] != [_canonical_layer(b) for b in other.layers]:
            return False
        if _completed(self.encoding) != _completed(other.encoding):
            return False
        return all(np.array_equal(a, b) for name in ("weights", "bias", "threshold")
                   for a, b in zip(getattr(self, name), getattr(other, name)))


def _array(values, dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype) if values is None else np.ascontiguousarray(values, dtype=dtype)


def _int_tuple(value):
    """A list or tuple of integers as a tuple of ints; anything else unchanged (validate reports it)."""
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    return value


def _canonical_layer(layer):
    if not isinstance(layer, LayerSpec) or layer.kind == "dense":
        return layer
    return replace(layer, kernel=_int_tuple(layer.kernel), stride=_int_tuple(layer.stride),
                   padding=_int_tuple(layer.padding))


def _is_pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)


def _layer_inputs(where, layers, input_size, input_shape, input_polarity) -> list:
    """Per layer ``(n_in, in_shape)``: how many units it reads and their ``(C, H, W)`` shape (None:
    flat). Checks the layer kinds, their order, windows and sizes, and the input shape
    (docs/semantics.md section 10); raises BundleError naming the field."""
    if input_polarity not in INPUT_POLARITIES:
        _fail(where, "input_polarity", f"must be one of {', '.join(INPUT_POLARITIES)}, "
              f"got {input_polarity!r}")
    for k, layer in enumerate(layers):
        if not isinstance(layer, LayerSpec):
            _fail(where, f"layers[{k}]", "must be a LayerSpec")
        if layer.kind not in LAYER_KINDS:
            _fail(where, f"layers[{k}].kind", f"must be one of {', '.join(LAYER_KINDS)}, "
                  f"got {layer.kind!r}")
    if layers[0].kind == "pool2d":
        _fail(where, "layers[0].kind", "pool2d cannot read the input events: pooling takes the "
              "spikes of a conv2d or pool2d layer")
    if layers[-1].kind == "pool2d":
        _fail(where, f"layers[{len(layers) - 1}].kind", "the output layer needs neurons "
              "(dense or conv2d), got pool2d")
    units = input_size * (2 if input_polarity == "channels" else 1)
    shape = None
    if layers[0].kind == "conv2d":
        if input_shape is None:
            _fail(where, "input_shape", "missing: layer 1 is conv2d and reads a [C, H, W] map")
        shape = _int_tuple(input_shape)
        if not (isinstance(shape, tuple) and len(shape) == 3 and min(shape) >= 1):
            shown = list(shape) if isinstance(shape, (list, tuple)) else repr(shape)
            _fail(where, "input_shape", f"must be [C, H, W], three integers >= 1, got {shown}")
        if input_polarity == "channels" and (shape[0] != 2 or shape[1] * shape[2] != input_size):
            _fail(where, "input_shape", f"must be [2, H, W] with H x W = input_size {input_size} "
                  f"(one channel per polarity), got {list(shape)}")
        if shape[0] * shape[1] * shape[2] != units:
            _fail(where, "input_shape", f"C x H x W = {' x '.join(map(str, shape))} must equal "
                  f"input_size {input_size}")
    elif input_shape is not None:
        _fail(where, "input_shape", "only for a network whose layer 1 is conv2d (a dense layer 1 "
              "reads its inputs flat)")
    inputs, n_in = [], units
    for k, layer in enumerate(layers):
        p = f"layers[{k}]"
        _check_int(where, f"{p}.size", layer.size, 1, MAX_NEURONS)
        inputs.append((n_in, shape))
        if layer.kind == "dense":
            for name in ("channels", "kernel", "stride", "padding"):
                if getattr(layer, name) is not None:
                    _fail(where, f"{p}.{name}", f"not a field of a dense layer (only of "
                          f"{'conv2d' if name == 'channels' else 'conv2d and pool2d'} layers)")
            n_in, shape = layer.size, None
            continue
        if shape is None:
            _fail(where, f"{p}.kind", f"{layer.kind} reads a [C, H, W] map: it must follow a "
                  "conv2d or pool2d layer, not a dense one")
        if layer.kind == "conv2d":
            _check_int(where, f"{p}.channels", layer.channels, 1, MAX_NEURONS)
        else:
            if layer.channels is not None:
                _fail(where, f"{p}.channels", "not a field of a pool2d layer (it keeps the "
                      "channels it reads)")
            defaults = LayerSpec(size=layer.size)
            for name in ("current", "leak_v", "leak_c", "reset", "fire_once"):
                if getattr(layer, name) != getattr(defaults, name):
                    _fail(where, f"{p}.{name}", "a pool2d layer has no neurons (leave current, "
                          "leak_v, leak_c, reset and fire_once at their defaults)")
        _check_window(where, p, layer, shape)
        out = output_shape(layer, shape)
        if layer.size != out[0] * out[1] * out[2]:
            _fail(where, f"{p}.size", f"must be C x H x W = {' x '.join(map(str, out))} = "
                  f"{out[0] * out[1] * out[2]} (its output for a {' x '.join(map(str, shape))} "
                  f"input), got {layer.size}")
        n_in, shape = layer.size, out
    return inputs


def _check_window(where, p, layer, shape):
    """kernel, stride, padding of a conv2d or pool2d layer reading a ``(C, H, W)`` map."""
    for name in ("kernel", "stride", "padding"):
        if not _is_pair(getattr(layer, name)):
            _fail(where, f"{p}.{name}", f"must be a pair [h, w] of integers, got {getattr(layer, name)!r}")
    kernel, stride, padding = (tuple(int(v) for v in getattr(layer, name))
                               for name in ("kernel", "stride", "padding"))
    if min(kernel) < 1 or max(kernel) > MAX_NEURONS:
        _fail(where, f"{p}.kernel", f"must be in [1, {MAX_NEURONS}], got {list(kernel)}")
    if any(not 0 <= pd < k for pd, k in zip(padding, kernel)):
        _fail(where, f"{p}.padding", f"must be in [0, kernel - 1] (every window must cover an "
              f"input), got {list(padding)} for kernel {list(kernel)}")
    if any(not 1 <= s <= k for s, k in zip(stride, kernel)):
        _fail(where, f"{p}.stride", f"must be in [1, kernel] (a longer stride skips inputs), got "
              f"{list(stride)} for kernel {list(kernel)}")
    if any(k > n + 2 * pd for k, n, pd in zip(kernel, shape[1:], padding)):
        _fail(where, f"{p}.kernel", f"{kernel[0]} x {kernel[1]} does not fit the {shape[1]} x "
              f"{shape[2]} input padded by {list(padding)}")


def _check_int(where, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(where, name, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        _fail(where, name, f"must be in [{lo}, {hi}], got {value}")


def _completed(encoding):
    """The encoding with its defaults filled in; left as it is when invalid (validate reports it)."""
    try:
        return complete_encoding(encoding)
    except EncodingError:
        return dict(encoding) if isinstance(encoding, dict) else encoding


def _check_encoding(where, encoding, input_size, require_all=False, prefix="encoding"):
    """The checked, complete encoding (firmware_export/encoding.py), or a BundleError naming the
    parameter; an event sensor must have exactly ``input_size`` pixels."""
    try:
        spec = complete_encoding(encoding, require_all)
    except EncodingError as exc:
        _fail(where, f"{prefix}.{exc.field}" if exc.field else prefix, exc.problem)
    if spec["kind"] == "events" and spec["width"] * spec["height"] != input_size:
        _fail(where, f"{prefix}.width", f"width x height = {spec['width']} x {spec['height']} "
              f"must equal input_size {input_size}")
    return spec


def _encoding_from_manifest(m, version, metadata, input_size, time_steps, where):
    """``(encoding, metadata)`` of a manifest: version 2 records the complete encoding in the
    field ``encoding``; version 1 in the metadata (:func:`encoding_from_v1_metadata`)."""
    if version >= 2:
        return _check_encoding(where, _get(m, "encoding", where, "encoding", dict), input_size,
                               require_all=True), metadata
    return encoding_from_v1_metadata(metadata, input_size, time_steps, where)


def encoding_from_v1_metadata(metadata, input_size, time_steps, where="bundle"):
    """``(encoding, metadata without it)`` of a schema version 1 bundle, whose encoding lived in
    ``metadata.encoding``: parameters optional, absent meaning rate, with a copy of
    ``time_steps``. It is completed with the defaults the version 1 code applied."""
    if not isinstance(metadata, dict):
        _fail(where, "metadata", "must be a JSON object")
    metadata = dict(metadata)
    spec = metadata.pop("encoding", None) or dict(DEFAULT_ENCODING)
    if not isinstance(spec, dict):
        _fail(where, "metadata.encoding", f"must be an object, got {json.dumps(spec)[:40]}")
    spec = dict(spec)
    if spec.pop("time_steps", time_steps) != time_steps:
        _fail(where, "metadata.encoding.time_steps", f"differs from time_steps {time_steps}")
    return _check_encoding(where, spec, input_size, prefix="metadata.encoding"), metadata


def _check_bool(where, name, value):
    if not isinstance(value, (bool, np.bool_)):
        _fail(where, name, f"must be true or false, got {value!r}")


def _check_vector(where, name, arr, length, lo, hi):
    if not isinstance(arr, np.ndarray) or arr.shape != (length,):
        _fail(where, name, f"shape must be ({length},), got {getattr(arr, 'shape', type(arr).__name__)}")
    if not np.issubdtype(arr.dtype, np.integer):
        _fail(where, name, f"must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = int(arr[(arr < lo) | (arr > hi)][0])
        _fail(where, name, f"values must be in [{lo}, {hi}], found {bad}")


# ---------------------------------------------------------------------------------------------
# Packing: element i at bit i (LSB first) everywhere.

def pack_weight_rows(w: np.ndarray) -> bytes:
    """Pack a 0/1 matrix [N_in, N_out] row by row; bit j of row i is byte j//8, bit j%8."""
    return np.packbits(np.asarray(w, dtype=np.uint8), axis=1, bitorder="little").tobytes()


def unpack_weight_rows(data: bytes, n_in: int, n_out: int) -> np.ndarray:
    row_bytes = (n_out + 7) // 8
    rows = np.frombuffer(data, dtype=np.uint8).reshape(n_in, row_bytes)
    return np.unpackbits(rows, axis=1, bitorder="little")[:, :n_out].copy()


def conv_weight_rows(w: np.ndarray) -> np.ndarray:
    """A conv2d layer's bits ``[C_out, C_in, K_h, K_w]`` as the rows its file stores: one row per
    ``(c, ky, kx)`` in that order (c slowest), holding the ``C_out`` bits of that tap."""
    return np.ascontiguousarray(np.asarray(w).transpose(1, 2, 3, 0).reshape(-1, w.shape[0]))


def conv_weights_from_rows(rows: np.ndarray, c_out: int, c_in: int, kernel) -> np.ndarray:
    """Inverse of :func:`conv_weight_rows`."""
    return np.ascontiguousarray(rows.reshape(c_in, kernel[0], kernel[1], c_out).transpose(3, 0, 1, 2))


def _weight_file_rows(bundle: "Bundle", k: int) -> np.ndarray:
    w = bundle.weights[k]
    return conv_weight_rows(w) if bundle.layers[k].kind == "conv2d" else w


def _file_names(k: int) -> dict:
    return {"weights": f"layer{k + 1}_weights.bin", "bias": f"layer{k + 1}_bias.bin",
            "threshold": f"layer{k + 1}_threshold.bin"}


def _encode_files(bundle: Bundle) -> dict[str, bytes]:
    files = {}
    for k, layer in enumerate(bundle.layers):
        if not layer.has_neurons:
            continue
        names = _file_names(k)
        files[names["weights"]] = pack_weight_rows(_weight_file_rows(bundle, k))
        files[names["bias"]] = np.asarray(bundle.bias[k], dtype="<i4").tobytes()
        files[names["threshold"]] = np.asarray(bundle.threshold[k], dtype="<i4").tobytes()
    return files


def _layer_manifest(k: int, layer: LayerSpec) -> dict:
    """A layer's manifest entry; a dense layer's has no ``kind`` (the default), so that dense
    bundles are written exactly as before the spatial kinds existed."""
    entry = {} if layer.kind == "dense" else {"kind": layer.kind}
    entry["size"] = int(layer.size)
    if layer.kind == "conv2d":
        entry["channels"] = int(layer.channels)
    if layer.kind != "dense":
        entry.update({name: [int(v) for v in getattr(layer, name)]
                      for name in ("kernel", "stride", "padding")})
    if layer.has_neurons:
        entry.update({"current": bool(layer.current), "leak_v": int(layer.leak_v),
                      "leak_c": int(layer.leak_c), "reset": layer.reset,
                      "fire_once": bool(layer.fire_once), "files": _file_names(k)})
    return entry


def manifest_dict(bundle: Bundle, files: dict[str, bytes]) -> dict:
    # input_shape and input_polarity only where they say something (a conv2d layer 1, polarity
    # channels): a dense bundle's manifest, and so its digest, is what it always was.
    spatial_input = {}
    if bundle.input_shape is not None:
        spatial_input["input_shape"] = [int(v) for v in bundle.input_shape]
    if bundle.input_polarity != "xnor":
        spatial_input["input_polarity"] = bundle.input_polarity
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "input_size": int(bundle.input_size),
        **spatial_input,
        "time_steps": int(bundle.time_steps),
        "widths": {"v": int(bundle.v_width), "c": int(bundle.c_width), "bias": int(bundle.bias_width)},
        "readout": bundle.readout,
        "max_input_events": int(bundle.max_input_events),
        "encoding": bundle.encoding,
        "layers": [_layer_manifest(k, layer) for k, layer in enumerate(bundle.layers)],
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in sorted(files.items())},
        "metadata": bundle.metadata,
    }


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content (fsynced; never
    through a symbolic link). See :func:`bsnn.firmware_export.outputs.write_file`."""
    write_file(path, data)


def is_previous_bundle(path: Path) -> bool:
    """True when the folder ``path`` holds a bundle (its manifest names the format) and nothing
    but the files of that bundle: the only kind of folder a bundle output may replace."""
    try:
        manifest = json.loads(read_regular_file(Path(path) / MANIFEST, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME \
            or not isinstance(manifest.get("files"), dict):
        return False
    return only_files(Path(path), {MANIFEST, MANIFEST_SUM, *manifest["files"]})


def check_bundle_output(out_dir, inputs=()) -> None:
    """Refuse now what :func:`save_bundle` would refuse at the end of a long run."""
    check_folder_output(out_dir, "bundle", recognise=is_previous_bundle, inputs=inputs)


@contextmanager
def bundle_output(out_dir, inputs=()):
    """The output transaction of a bundle folder (:func:`bsnn.firmware_export.outputs.output_folder`):
    yields a staging folder to write (``write_bundle_files``) and, when the block succeeds, swaps
    it in for ``out_dir``. An existing ``out_dir`` must be a bundle; ``inputs`` must not clash."""
    with output_folder(out_dir, "bundle", recognise=is_previous_bundle, marker=False,
                       inputs=inputs) as staging:
        yield staging


def _bundle_contents(bundle: Bundle) -> dict[str, bytes]:
    bundle = bundle.normalized().validate("bundle")
    files = _encode_files(bundle)
    manifest = manifest_dict(bundle, files)
    try:
        text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    except TypeError as exc:
        raise BundleError(f"bundle: metadata: not JSON-serialisable ({exc})") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {**files, MANIFEST: text.encode(), MANIFEST_SUM: f"{digest}  {MANIFEST}\n".encode()}


def write_bundle_files(bundle: Bundle, folder) -> Path:
    """Validate ``bundle`` and write its files into ``folder`` (a staging folder of
    :func:`bundle_output`; a bundle written there before is overwritten file by file)."""
    for name, data in _bundle_contents(bundle).items():
        write_staged(folder, name, data)
    return Path(folder)


def save_bundle(bundle: Bundle, out_dir, inputs=()) -> Path:
    """Validate ``bundle`` and write it as a bundle directory, atomically (built aside, fsynced,
    swapped in). An existing ``out_dir`` must be a bundle; it is never one of ``inputs``."""
    contents = _bundle_contents(bundle)   # every check before anything touches the disk
    with bundle_output(out_dir, inputs) as staging:
        for name, data in contents.items():
            write_staged(staging, name, data)
    return Path(out_dir)


_TOP_KEYS = {"format", "schema_version", "input_size", "time_steps", "widths", "readout",
             "max_input_events", "encoding", "layers", "files", "metadata", "input_shape",
             "input_polarity"}
_SINCE_VERSION_2 = {"encoding", "input_shape", "input_polarity"}
_NEURON_KEYS = {"size", "current", "leak_v", "leak_c", "reset", "fire_once", "files"}
_WINDOW_KEYS = {"kernel", "stride", "padding"}
_LAYER_KEYS = {"dense": _NEURON_KEYS | {"kind"},
               "conv2d": _NEURON_KEYS | _WINDOW_KEYS | {"kind", "channels"},
               "pool2d": _WINDOW_KEYS | {"kind", "size"}}


def _get(obj, key, where, name, kind):
    if not isinstance(obj, dict) or key not in obj:
        _fail(where, name, "missing")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        _fail(where, name, f"must be an integer, got {json.dumps(value)}")
    if kind is not int and not isinstance(value, kind):
        _fail(where, name, f"must be a {kind.__name__ if isinstance(kind, type) else 'value'}, "
              f"got {json.dumps(value)[:40]}")
    return value


def _check_keys(obj, allowed, where, prefix):
    extra = sorted(set(obj) - allowed)
    if extra:
        _fail(where, f"{prefix}{extra[0]}", "unknown field")


def load_bundle(path) -> Bundle:
    """Load and fully validate a bundle directory. Any defect raises a one-line BundleError."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (missing)")
    # Every file is opened relative to the folder, without following links and with a size limit.
    try:
        root_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise BundleError(f"{root}: not a bundle directory ({exc.strerror})") from None
    try:
        return _load_bundle_from(root, root_fd)
    finally:
        os.close(root_fd)


def _read_in_bundle(root: Path, root_fd: int, name: str, max_bytes: int) -> bytes:
    fpath = root / name
    try:
        return read_regular_file(name, max_bytes, dir_fd=root_fd, shown=fpath)
    except FileNotFoundError:
        raise BundleError(f"{fpath}: file: missing") from None
    except InputFileError as exc:
        if exc.size is not None:
            raise BundleError(f"{fpath}: bytes: at most {max_bytes} expected, found {exc.size}") from None
        raise BundleError(f"{fpath}: file: {exc.problem}") from None


def _load_bundle_from(root: Path, root_fd: int) -> Bundle:
    mpath = root / MANIFEST
    where = str(mpath)
    raw = _read_in_bundle(root, root_fd, MANIFEST, MAX_MANIFEST_BYTES)
    spath = root / MANIFEST_SUM
    sum_line = _read_in_bundle(root, root_fd, MANIFEST_SUM, 4096)
    expected_line = f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n".encode()
    if sum_line != expected_line:
        if len(sum_line) != len(expected_line) or not sum_line.endswith(f"  {MANIFEST}\n".encode()):
            raise BundleError(f"{spath}: format: expected '<sha256>  {MANIFEST}' on one line")
        raise BundleError(f"{where}: sha256: checksum mismatch with {MANIFEST_SUM} (corrupted or modified)")
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: json: malformed ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise BundleError(f"{where}: json: nested too deeply") from None
    if not isinstance(m, dict):
        _fail(where, "manifest", "must be a JSON object")
    if _get(m, "format", where, "format", str) != FORMAT_NAME:
        _fail(where, "format", f"must be {FORMAT_NAME!r}")
    version = _get(m, "schema_version", where, "schema_version", int)
    if version not in READABLE_VERSIONS:
        _fail(where, "schema_version", f"unsupported version {version} (this tool reads "
              f"{', '.join(map(str, READABLE_VERSIONS))})")
    _check_keys(m, _TOP_KEYS - (_SINCE_VERSION_2 if version == 1 else set()), where, "")
    widths = _get(m, "widths", where, "widths", dict)
    _check_keys(widths, {"v", "c", "bias"}, where, "widths.")
    files_meta = _get(m, "files", where, "files", dict)
    layers_raw = _get(m, "layers", where, "layers", list)
    if not layers_raw:
        _fail(where, "layers", "must be a non-empty list")

    def read_file(name, field_name, kind, max_bytes, shape):
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            _fail(where, field_name, f"bad file name {name!r}")
        entry = files_meta.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("bytes"), int) or isinstance(entry.get("bytes"), bool):
            _fail(where, f"files.{name}", "missing or malformed entry (needs bytes and sha256)")
        fpath = root / name
        if entry["bytes"] > max_bytes:   # the layer's shape gives the size: read no more
            raise BundleError(f"{fpath}: {kind}: expected {max_bytes} bytes {shape}, found {entry['bytes']}")
        try:
            data = read_regular_file(name, entry["bytes"], dir_fd=root_fd, shown=fpath)
            found = len(data)
        except FileNotFoundError:
            raise BundleError(f"{fpath}: file: missing") from None
        except InputFileError as exc:
            if exc.size is None:
                raise BundleError(f"{fpath}: file: {exc.problem}") from None
            found = exc.size
        if found != entry["bytes"]:
            raise BundleError(f"{fpath}: bytes: expected {entry['bytes']}, found {found} (truncated or extended)")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError(f"{fpath}: sha256: checksum mismatch (corrupted or modified)")
        return data, str(fpath)

    input_size = _get(m, "input_size", where, "input_size", int)
    _check_int(where, "input_size", input_size, 1, MAX_NEURONS)
    input_shape = None
    if "input_shape" in m:
        input_shape = _int_tuple(_get(m, "input_shape", where, "input_shape", list))
    input_polarity = _get(m, "input_polarity", where, "input_polarity", str) \
        if "input_polarity" in m else "xnor"
    layers = [_layer_from_manifest(lr, k, where) for k, lr in enumerate(layers_raw)]
    inputs = _layer_inputs(where, layers, input_size, input_shape, input_polarity)
    weights, bias, threshold = [], [], []
    referenced = set()
    for k, (spec, lr, (n_in, in_shape)) in enumerate(zip(layers, layers_raw, inputs)):
        p = f"layers[{k}]"
        if not spec.has_neurons:
            for arrays in (weights, bias, threshold):
                arrays.append(np.zeros(0, dtype=np.uint8 if arrays is weights else np.int64))
            continue
        names = _get(lr, "files", where, f"{p}.files", dict)
        _check_keys(names, {"weights", "bias", "threshold"}, where, f"{p}.files.")
        wname = _get(names, "weights", where, f"{p}.files.weights", str)
        if spec.kind == "conv2d":   # rows (c, ky, kx), C_out bits each
            n_rows, n_bits = in_shape[0] * spec.kernel[0] * spec.kernel[1], spec.channels
            shape_text = (f"{spec.channels}x{in_shape[0]}x{spec.kernel[0]}x{spec.kernel[1]} (rows "
                          f"c, ky, kx of {spec.channels} bits)")
            bit_name = "output channel"
        else:
            n_rows, n_bits, shape_text, bit_name = n_in, spec.size, f"{n_in}x{spec.size}", "neuron"
        expected = n_rows * ((n_bits + 7) // 8)
        data, fwhere = read_file(wname, f"{p}.files.weights", "weights", expected, f"for {shape_text}")
        if len(data) != expected:
            raise BundleError(f"{fwhere}: weights: expected {expected} bytes for {shape_text}, found {len(data)}")
        w = unpack_weight_rows(data, n_rows, n_bits)
        if n_bits % 8:
            pad = np.frombuffer(data, dtype=np.uint8).reshape(n_rows, -1)[:, -1] >> (n_bits % 8)
            if pad.any():
                raise BundleError(f"{fwhere}: weights: padding bits beyond {bit_name} {n_bits - 1} must be 0")
        if spec.kind == "conv2d":
            w = conv_weights_from_rows(w, spec.channels, in_shape[0], spec.kernel)
        vecs = []
        for kind in ("bias", "threshold"):
            name = _get(names, kind, where, f"{p}.files.{kind}", str)
            vdata, vwhere = read_file(name, f"{p}.files.{kind}", kind, 4 * n_bits, f"(int32 x {n_bits})")
            if len(vdata) != 4 * n_bits:
                raise BundleError(f"{vwhere}: {kind}: expected {4 * n_bits} bytes (int32 x {n_bits}), found {len(vdata)}")
            vecs.append(np.frombuffer(vdata, dtype="<i4").astype(np.int64))
            referenced.add(name)
        referenced.add(wname)
        weights.append(w)
        bias.append(vecs[0])
        threshold.append(vecs[1])
    unlisted = sorted(set(files_meta) - referenced)
    if unlisted:
        _fail(where, f"files.{unlisted[0]}", "listed but not used by any layer")
    time_steps = _get(m, "time_steps", where, "time_steps", int)
    encoding, metadata = _encoding_from_manifest(m, version, m.get("metadata", {}), input_size,
                                                 time_steps, where)
    bundle = Bundle(
        input_size=input_size,
        time_steps=time_steps,
        layers=layers, weights=weights, bias=bias, threshold=threshold,
        v_width=_get(widths, "v", where, "widths.v", int),
        c_width=_get(widths, "c", where, "widths.c", int),
        bias_width=_get(widths, "bias", where, "widths.bias", int),
        readout=_get(m, "readout", where, "readout", str),
        max_input_events=_get(m, "max_input_events", where, "max_input_events", int),
        encoding=encoding,
        metadata=metadata,
        input_shape=input_shape,
        input_polarity=input_polarity,
    )
    return bundle.validate(where)


def _layer_from_manifest(lr, k: int, where: str) -> LayerSpec:
    """The LayerSpec of manifest entry ``layers[k]`` (fields by kind; files are read later)."""
    p = f"layers[{k}]"
    if not isinstance(lr, dict):
        _fail(where, p, "must be an object")
    kind = _get(lr, "kind", where, f"{p}.kind", str) if "kind" in lr else "dense"
    if kind not in LAYER_KINDS:
        _fail(where, f"{p}.kind", f"must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
    _check_keys(lr, _LAYER_KEYS[kind], where, f"{p}.")
    size = _get(lr, "size", where, f"{p}.size", int)
    _check_int(where, f"{p}.size", size, 1, MAX_NEURONS)
    fields = {"size": size, "kind": kind}
    if kind != "pool2d":
        fields.update(current=_get(lr, "current", where, f"{p}.current", bool),
                      leak_v=_get(lr, "leak_v", where, f"{p}.leak_v", int),
                      leak_c=_get(lr, "leak_c", where, f"{p}.leak_c", int),
                      reset=_get(lr, "reset", where, f"{p}.reset", str),
                      fire_once=_get(lr, "fire_once", where, f"{p}.fire_once", bool))
    if kind == "conv2d":
        fields["channels"] = _get(lr, "channels", where, f"{p}.channels", int)
    if kind != "dense":
        for name in ("kernel", "stride", "padding"):
            value = _get(lr, name, where, f"{p}.{name}", list)
            if not _is_pair(value):
                _fail(where, f"{p}.{name}", f"must be a pair [h, w] of integers, got {json.dumps(value)[:40]}")
            fields[name] = _int_tuple(value)
    return LayerSpec(**fields)


def random_bundle(rng: np.random.Generator, sizes=None, spatial: bool = False, **overrides) -> Bundle:
    """A random valid bundle, for tests and for trying the flow before a model is trained.

    Modes, widths and parameters are drawn so that neurons actually fire. ``sizes`` is
    ``[N_0, N_1, ..., N_L]``; anything in ``overrides`` replaces the drawn value (``layers`` may be
    given as LayerSpec list). With ``spatial`` (or an ``input_shape`` override) the network is
    convolutional (docs/semantics.md section 10): see :func:`_random_spatial_bundle`.
    """
    if spatial or overrides.get("input_shape") is not None:
        return _random_spatial_bundle(rng, **overrides)
    if sizes is None:
        n_layers = int(rng.integers(1, 4))
        sizes = [int(rng.integers(2, 24))] + [int(rng.integers(1, 20)) for _ in range(n_layers)]
    v_width = int(overrides.get("v_width", rng.integers(6, 17)))
    c_width = int(overrides.get("c_width", rng.integers(6, 17)))
    bias_width = int(overrides.get("bias_width", rng.integers(2, v_width + 1)))
    layers = overrides.get("layers")
    if layers is None:
        layers = []
        for n in sizes[1:]:
            layers.append(LayerSpec(size=int(n), **_random_layer_modes(rng, v_width, c_width)))
    weights, bias, threshold = [], [], []
    vmax = (1 << (v_width - 1)) - 1
    bmax = (1 << (bias_width - 1)) - 1
    for n_in, layer in zip(sizes[:-1], layers):
        weights.append((rng.random((n_in, layer.size)) < rng.uniform(0.3, 0.8)).astype(np.uint8))
        bias.append(rng.integers(-min(bmax + 1, 4), min(bmax, 3) + 1, layer.size).astype(np.int64))
        threshold.append(rng.integers(1, min(vmax, max(2, n_in // 2)) + 1, layer.size).astype(np.int64))
    fields = dict(input_size=int(sizes[0]), time_steps=int(rng.integers(1, 9)), layers=layers,
                  weights=weights, bias=bias, threshold=threshold, v_width=v_width, c_width=c_width,
                  bias_width=bias_width, readout=str(rng.choice(READOUTS)),
                  max_input_events=int(2 * sizes[0]), encoding=dict(DEFAULT_ENCODING),
                  metadata={"origin": "random_bundle"})
    fields.update({k: v for k, v in overrides.items() if k in fields})
    return Bundle(**fields).normalized().validate()


def _random_layer_modes(rng, v_width: int, c_width: int) -> dict:
    ttfs = rng.random() < 0.3
    return dict(current=bool(ttfs or rng.random() < 0.3),
                leak_v=0 if ttfs or rng.random() < 0.3 else int(rng.integers(1, min(v_width, 6))),
                leak_c=0 if ttfs or rng.random() < 0.5 else int(rng.integers(1, min(c_width, 6))),
                reset="none" if ttfs else str(rng.choice(RESETS)),
                fire_once=bool(ttfs or rng.random() < 0.15))


def _random_window(rng, extent: int, max_kernel: int) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` along one dimension that fits ``extent``: kernels up to
    ``max_kernel`` (beyond the extent only with enough padding), strides up to the kernel."""
    kernel = int(rng.integers(1, min(max_kernel, extent + 2) + 1))
    padding = int(rng.integers(max(0, -(-(kernel - extent) // 2)), kernel))
    stride = int(rng.integers(1, min(kernel, 3) + 1))
    return kernel, stride, padding


def random_spatial_layers(rng, input_shape, v_width: int = 16, c_width: int = 16) -> list[LayerSpec]:
    """Random conv2d and pool2d layers reading ``input_shape``, then 0 to 2 dense layers; odd
    shapes, strides up to 3, padding, 1 x 1 kernels, channel counts 1 to 11."""
    layers, shape = [], tuple(input_shape)
    for i in range(int(rng.integers(1, 4))):
        kh, sh, ph = _random_window(rng, shape[1], 5)
        kw, sw, pw = _random_window(rng, shape[2], 5)
        if i > 0 and rng.random() < 0.35:
            layer = LayerSpec.pool2d(shape, (kh, kw), (sh, sw), (ph, pw))
        else:
            layer = LayerSpec.conv2d(shape, int(rng.integers(1, 12)), (kh, kw), (sh, sw), (ph, pw),
                                     **_random_layer_modes(rng, v_width, c_width))
        layers.append(layer)
        shape = output_shape(layer, shape)
    n_dense = int(rng.integers(0, 3)) or int(layers[-1].kind == "pool2d")
    for _ in range(n_dense):
        layers.append(LayerSpec(size=int(rng.integers(1, 13)), **_random_layer_modes(rng, v_width, c_width)))
    return layers


def _random_spatial_bundle(rng, **overrides) -> Bundle:
    """A random convolutional bundle: input shape, polarity rule (``xnor`` when the shape is
    given), layers (:func:`random_spatial_layers`) and parameters drawn, or taken from
    ``overrides`` (``input_shape`` with ``layers``)."""
    v_width = int(overrides.get("v_width", rng.integers(6, 17)))
    c_width = int(overrides.get("c_width", rng.integers(6, 17)))
    bias_width = int(overrides.get("bias_width", rng.integers(2, v_width + 1)))
    input_shape = overrides.get("input_shape")
    if "input_polarity" in overrides:
        polarity = overrides["input_polarity"]
    else:   # a given input shape reads its inputs by the default rule
        polarity = "channels" if input_shape is None and rng.random() < 0.3 else "xnor"
    if input_shape is None:
        input_shape = (2 if polarity == "channels" else int(rng.integers(1, 4)),
                       int(rng.integers(1, 11)), int(rng.integers(1, 11)))
    input_shape = tuple(int(v) for v in input_shape)
    layers = overrides.get("layers") or random_spatial_layers(rng, input_shape, v_width, c_width)
    input_size = int(np.prod(input_shape)) // (2 if polarity == "channels" else 1)
    vmax, bmax = (1 << (v_width - 1)) - 1, (1 << (bias_width - 1)) - 1
    weights, bias, threshold = [], [], []
    for layer, (n_in, in_shape) in zip(layers, _layer_inputs("random_bundle", layers, input_size,
                                                             input_shape, polarity)):
        if layer.kind == "pool2d":
            weights.append(np.zeros(0, dtype=np.uint8))
            bias.append(np.zeros(0, dtype=np.int64))
            threshold.append(np.zeros(0, dtype=np.int64))
            continue
        if layer.kind == "conv2d":
            w_shape, n_params = (layer.channels, in_shape[0], *layer.kernel), layer.channels
            fan_in = window_fan_in("conv2d", in_shape, layer.kernel)
        else:
            w_shape, n_params, fan_in = (n_in, layer.size), layer.size, n_in
        weights.append((rng.random(w_shape) < rng.uniform(0.3, 0.8)).astype(np.uint8))
        bias.append(rng.integers(-min(bmax + 1, 4), min(bmax, 3) + 1, n_params).astype(np.int64))
        threshold.append(rng.integers(1, min(vmax, max(2, fan_in // 2)) + 1, n_params).astype(np.int64))
    fields = dict(input_size=input_size, time_steps=int(rng.integers(1, 9)), layers=list(layers),
                  weights=weights, bias=bias, threshold=threshold, v_width=v_width,
                  c_width=c_width, bias_width=bias_width, readout=str(rng.choice(READOUTS)),
                  max_input_events=int(2 * input_size), encoding=dict(DEFAULT_ENCODING),
                  metadata={"origin": "random_bundle"}, input_shape=input_shape,
                  input_polarity=polarity)
    fields.update({k: v for k, v in overrides.items() if k in fields and k != "input_shape"})
    return Bundle(**fields).normalized().validate()


def bundle_digest(bundle: Bundle) -> str:
    """sha256 over the network's definition (manifest without metadata, and every data file)."""
    bundle = bundle.normalized()
    files = _encode_files(bundle)
    manifest = manifest_dict(bundle, files)
    manifest.pop("metadata")
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
