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

SCHEMA_VERSION = 2                # what save_bundle writes
READABLE_VERSIONS = (1, 2)        # version 1: the encoding lived in metadata.encoding (see below)
FORMAT_NAME = "bsnn-bundle"
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"   # sha256sum format, so that no byte of the bundle goes unchecked
RESETS = ("subtract", "zero", "none")
READOUTS = ("spike_count", "potential", "first_spike")

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
    """Per-layer neuron configuration (docs/semantics.md section 1)."""
    size: int
    current: bool = False
    leak_v: int = 0
    leak_c: int = 0
    reset: str = "subtract"
    fire_once: bool = False


@dataclass
class Bundle:
    """An integer, hardware-exact BSNN. Weights are 0/1 (1 means +1), ``[N_in, N_out]``."""
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

    @property
    def sizes(self) -> list[int]:
        return [self.input_size] + [layer.size for layer in self.layers]

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
        n_in = self.input_size
        for k, layer in enumerate(self.layers):
            p = f"layers[{k}]"
            if not isinstance(layer, LayerSpec):
                _fail(where, p, "must be a LayerSpec")
            _check_int(where, f"{p}.size", layer.size, 1, MAX_NEURONS)
            _check_bool(where, f"{p}.current", layer.current)
            _check_bool(where, f"{p}.fire_once", layer.fire_once)
            _check_int(where, f"{p}.leak_v", layer.leak_v, 0, self.v_width - 1)
            _check_int(where, f"{p}.leak_c", layer.leak_c, 0, self.c_width - 1)
            if layer.reset not in RESETS:
                _fail(where, f"{p}.reset", f"must be one of {', '.join(RESETS)}, got {layer.reset!r}")
            w = self.weights[k]
            if not isinstance(w, np.ndarray) or w.shape != (n_in, layer.size):
                _fail(where, f"{p}.weights", f"shape must be ({n_in}, {layer.size}), got "
                      f"{getattr(w, 'shape', type(w).__name__)}")
            if w.size and not np.isin(w, (0, 1)).all():
                _fail(where, f"{p}.weights", "must be binary (0 for -1, 1 for +1)")
            _check_vector(where, f"{p}.bias", self.bias[k], layer.size, bmin, bmax)
            _check_vector(where, f"{p}.threshold", self.threshold[k], layer.size, 1, vmax)
            n_in = layer.size
        _check_encoding(where, self.encoding, self.input_size)
        if not isinstance(self.metadata, dict):
            _fail(where, "metadata", "must be a JSON object")
        if "encoding" in self.metadata:
            _fail(where, "metadata.encoding", "the encoding is the top-level field encoding "
                  "since schema version 2, not metadata")
        return self

    def normalized(self) -> "Bundle":
        """A copy with canonical dtypes (uint8 weights, int64 parameters)."""
        return replace(
            self,
            layers=list(self.layers),
            weights=[np.ascontiguousarray(w, dtype=np.uint8) for w in self.weights],
            bias=[np.asarray(b, dtype=np.int64) for b in self.bias],
            threshold=[np.asarray(t, dtype=np.int64) for t in self.threshold],
            encoding=_completed(self.encoding),
            metadata=dict(self.metadata),
        )

    def same_as(self, other: "Bundle") -> bool:
        """True when both bundles define the same network and input encoding (metadata ignored)."""
        scalars = ("input_size", "time_steps", "v_width", "c_width", "bias_width", "readout",
                   "max_input_events", "layers")
        if any(getattr(self, s) != getattr(other, s) for s in scalars):
            return False
        if _completed(self.encoding) != _completed(other.encoding):
            return False
        return all(np.array_equal(a, b) for name in ("weights", "bias", "threshold")
                   for a, b in zip(getattr(self, name), getattr(other, name)))


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


def _file_names(k: int) -> dict:
    return {"weights": f"layer{k + 1}_weights.bin", "bias": f"layer{k + 1}_bias.bin",
            "threshold": f"layer{k + 1}_threshold.bin"}


def _encode_files(bundle: Bundle) -> dict[str, bytes]:
    files = {}
    for k in range(len(bundle.layers)):
        names = _file_names(k)
        files[names["weights"]] = pack_weight_rows(bundle.weights[k])
        files[names["bias"]] = np.asarray(bundle.bias[k], dtype="<i4").tobytes()
        files[names["threshold"]] = np.asarray(bundle.threshold[k], dtype="<i4").tobytes()
    return files


def manifest_dict(bundle: Bundle, files: dict[str, bytes]) -> dict:
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "input_size": int(bundle.input_size),
        "time_steps": int(bundle.time_steps),
        "widths": {"v": int(bundle.v_width), "c": int(bundle.c_width), "bias": int(bundle.bias_width)},
        "readout": bundle.readout,
        "max_input_events": int(bundle.max_input_events),
        "encoding": bundle.encoding,
        "layers": [
            {"size": int(layer.size), "current": bool(layer.current), "leak_v": int(layer.leak_v),
             "leak_c": int(layer.leak_c), "reset": layer.reset, "fire_once": bool(layer.fire_once),
             "files": _file_names(k)}
            for k, layer in enumerate(bundle.layers)
        ],
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
             "max_input_events", "encoding", "layers", "files", "metadata"}
_LAYER_KEYS = {"size", "current", "leak_v", "leak_c", "reset", "fire_once", "files"}


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
    _check_keys(m, _TOP_KEYS - ({"encoding"} if version == 1 else set()), where, "")
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
    layers, weights, bias, threshold = [], [], [], []
    n_in = input_size
    referenced = set()
    for k, lr in enumerate(layers_raw):
        p = f"layers[{k}]"
        if not isinstance(lr, dict):
            _fail(where, p, "must be an object")
        _check_keys(lr, _LAYER_KEYS, where, f"{p}.")
        size = _get(lr, "size", where, f"{p}.size", int)
        _check_int(where, f"{p}.size", size, 1, MAX_NEURONS)
        spec = LayerSpec(size=size,
                         current=_get(lr, "current", where, f"{p}.current", bool),
                         leak_v=_get(lr, "leak_v", where, f"{p}.leak_v", int),
                         leak_c=_get(lr, "leak_c", where, f"{p}.leak_c", int),
                         reset=_get(lr, "reset", where, f"{p}.reset", str),
                         fire_once=_get(lr, "fire_once", where, f"{p}.fire_once", bool))
        names = _get(lr, "files", where, f"{p}.files", dict)
        _check_keys(names, {"weights", "bias", "threshold"}, where, f"{p}.files.")
        wname = _get(names, "weights", where, f"{p}.files.weights", str)
        expected = n_in * ((size + 7) // 8)
        data, fwhere = read_file(wname, f"{p}.files.weights", "weights", expected, f"for {n_in}x{size}")
        if len(data) != expected:
            raise BundleError(f"{fwhere}: weights: expected {expected} bytes for {n_in}x{size}, found {len(data)}")
        w = unpack_weight_rows(data, n_in, size)
        if size % 8:
            pad = np.frombuffer(data, dtype=np.uint8).reshape(n_in, -1)[:, -1] >> (size % 8)
            if pad.any():
                raise BundleError(f"{fwhere}: weights: padding bits beyond neuron {size - 1} must be 0")
        vecs = []
        for kind in ("bias", "threshold"):
            name = _get(names, kind, where, f"{p}.files.{kind}", str)
            vdata, vwhere = read_file(name, f"{p}.files.{kind}", kind, 4 * size, f"(int32 x {size})")
            if len(vdata) != 4 * size:
                raise BundleError(f"{vwhere}: {kind}: expected {4 * size} bytes (int32 x {size}), found {len(vdata)}")
            vecs.append(np.frombuffer(vdata, dtype="<i4").astype(np.int64))
            referenced.add(name)
        referenced.add(wname)
        layers.append(spec)
        weights.append(w)
        bias.append(vecs[0])
        threshold.append(vecs[1])
        n_in = size
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
    )
    return bundle.validate(where)


def random_bundle(rng: np.random.Generator, sizes=None, **overrides) -> Bundle:
    """A random valid bundle, for tests and for trying the flow before a model is trained.

    Modes, widths and parameters are drawn so that neurons actually fire. ``sizes`` is
    ``[N_0, N_1, ..., N_L]``; anything in ``overrides`` replaces the drawn value (``layers`` may be
    given as LayerSpec list).
    """
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
            ttfs = rng.random() < 0.3
            layers.append(LayerSpec(
                size=int(n), current=bool(ttfs or rng.random() < 0.3),
                leak_v=0 if ttfs or rng.random() < 0.3 else int(rng.integers(1, min(v_width, 6))),
                leak_c=0 if ttfs or rng.random() < 0.5 else int(rng.integers(1, min(c_width, 6))),
                reset="none" if ttfs else str(rng.choice(RESETS)),
                fire_once=bool(ttfs or rng.random() < 0.15)))
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


def bundle_digest(bundle: Bundle) -> str:
    """sha256 over the network's definition (manifest without metadata, and every data file)."""
    bundle = bundle.normalized()
    files = _encode_files(bundle)
    manifest = manifest_dict(bundle, files)
    manifest.pop("metadata")
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
