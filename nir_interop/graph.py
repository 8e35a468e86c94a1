"""Reading a NIR graph as the chain of layers the core can run, and its discrete-time dynamics.

Shared by the importer (which compiles the chain to integers) and the float reference simulator
(which runs the same discretisation without quantisation, to measure what compilation costs).

A chain is a sequence of core layers (docs/semantics.md sections 1 and 10), each made of NIR
nodes (docs/nir.md, "The node types"):

* ``dense``: ``Affine`` or ``Linear`` (reading a 1-D vector), then ``LIF``, ``IF`` or ``CubaLIF``;
* ``conv2d``: ``Conv2d``, then the neuron node;
* ``pool2d`` (OR pooling): ``SumPool2d`` or ``AvgPool2d`` of spikes, then a ``Threshold`` that
  fires iff at least one input of the window spiked;

``Flatten`` to 1-D is the flat order of section 10.1. Two exact rewrites of pooled sums are
accepted as well: a pool followed (through ``Flatten``) by ``Affine``/``Linear`` is folded into
that dense layer's weights when its windows tile the map, and a pool of a one-channel map followed
by a neuron node is a ``conv2d`` layer of one channel with equal weights.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import nir
import numpy as np
from nir.ir.utils import calc_flatten_output

from bsnn.firmware_export.spatial import window_outputs

from .errors import NIRImportError

SUPPORTED = ("Input, Affine, Linear, Conv2d, SumPool2d, AvgPool2d, Threshold (after a pool), "
             "LIF, CubaLIF, IF, Flatten (to 1-D), Output")
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
SYNAPSES = (nir.Affine, nir.Linear)
POOLS = (nir.SumPool2d, nir.AvgPool2d)
DISCRETIZATIONS = ("euler", "exp")
RESETS = ("subtract", "zero", "none")


@dataclass
class ChainLayer:
    """One core layer. ``dense``: ``weight`` float64 ``[out, in]``; ``conv2d``: ``[C_out, C_in,
    K_h, K_w]``; ``pool2d``: empty (``neuron`` is then the Threshold node, ``synapse`` the pool).
    ``bias`` is per neuron (a conv2d layer's per-channel bias repeated over its positions)."""
    synapse: str
    neuron: str
    weight: np.ndarray
    bias: np.ndarray
    node: object                        # the neuron node (Threshold for pool2d)
    kind: str = "dense"
    in_shape: tuple | None = None       # (C, H, W) read by conv2d / pool2d
    out_shape: tuple | None = None      # (C, H, W) of conv2d / pool2d outputs
    kernel: tuple | None = None
    stride: tuple | None = None
    padding: tuple | None = None
    folded: list = field(default_factory=list)   # pool nodes folded into this layer's weights

    @property
    def size(self) -> int:
        if self.kind == "dense":
            return int(self.weight.shape[0])
        return int(np.prod(self.out_shape))

    @property
    def channels(self) -> int | None:
        return None if self.out_shape is None else int(self.out_shape[0])


@dataclass
class Chain:
    """A parsed graph: the input (``units`` values per step, as a map ``input_shape`` or flat),
    the layers, and the node names from input to output (``order``, without Input and Output)."""
    units: int
    input_shape: tuple | None
    layers: list
    order: list


def _non_unit_dims(shape) -> int:
    return int(sum(1 for d in np.asarray(shape).reshape(-1) if int(d) != 1))


def _shape_list(shape) -> list:
    return [int(d) for d in np.asarray(shape).reshape(-1)]


def _as_map(shape) -> tuple | None:
    """A NIR value shape as a ``(C, H, W)`` map: ``[H, W]`` is one channel, leading unit
    dimensions beyond three are dropped; None if it is no 2-D map."""
    dims = _shape_list(shape)
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 2:
        dims = [1] + dims
    return tuple(dims) if len(dims) == 3 else None


def _check_node_type(name, node):
    if isinstance(node, nir.NIRGraph):
        raise NIRImportError(f"node {name!r}: nested NIRGraph (a subgraph, e.g. a recurrent layer) "
                             f"is not supported")
    if not isinstance(node, (nir.Input, nir.Output, nir.Flatten, nir.Conv2d, nir.Threshold)
                      + SYNAPSES + NEURONS + POOLS):
        raise NIRImportError(f"node {name!r}: {type(node).__name__} is not supported by the core "
                             f"(supported: {SUPPORTED})")


def _pair(name, what, value) -> tuple[int, int]:
    """An int or a pair of ints (NIR writes either, as ints, tuples or arrays)."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or arr.dtype.kind not in "iuf" or not np.all(arr == np.round(arr)):
        raise NIRImportError(f"node {name!r}: {what} must be an integer or a pair of integers, "
                             f"got {np.asarray(value).tolist()!r:.40}")
    return int(arr[0]), int(arr[1])


def _window(name, kind, in_shape, kernel, stride, padding) -> tuple:
    """Check a window against docs/semantics.md section 10.1; return the output ``(H, W)``."""
    out = []
    for axis, n, k, s, p in zip(("height", "width"), in_shape[1:], kernel, stride, padding):
        if k < 1:
            raise NIRImportError(f"node {name!r}: kernel {axis} {k} must be >= 1")
        if not 0 <= p <= k - 1:
            raise NIRImportError(f"node {name!r}: padding {p} along the {axis} must be in 0 .. "
                                 f"kernel - 1 = {k - 1} (a window of padding only is not supported)")
        if not 1 <= s <= k:
            raise NIRImportError(f"node {name!r}: stride {s} along the {axis} must be in 1 .. kernel "
                                 f"{k} (a longer stride skips inputs; not supported by the core)")
        if k > n + 2 * p:
            raise NIRImportError(f"node {name!r}: {kind} kernel {k} does not fit the {axis} {n} "
                                 f"with padding {p}")
        out.append(window_outputs(n, k, s, p))
    return tuple(out)


def _conv_geometry(name, node, in_shape) -> tuple:
    """``(weight, bias per channel, kernel, stride, padding, out_shape)`` of a Conv2d node."""
    w = np.asarray(node.weight, dtype=np.float64)
    if w.ndim != 4:
        raise NIRImportError(f"node {name!r}: weight must be 4-D [C_out, C_in, K_h, K_w], got shape "
                             f"{list(w.shape)}")
    if not np.all(np.isfinite(w)):
        raise NIRImportError(f"node {name!r}: weight has non-finite values")
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    if groups != 1:
        raise NIRImportError(f"node {name!r}: groups = {groups}; the core's conv2d connects every "
                             f"input channel to every output channel (groups = 1 only)")
    if _pair(name, "dilation", node.dilation) != (1, 1):
        raise NIRImportError(f"node {name!r}: dilation {list(_pair(name, 'dilation', node.dilation))} "
                             f"is not supported (dilation 1 only)")
    if w.shape[1] != in_shape[0]:
        raise NIRImportError(f"node {name!r}: weight has {w.shape[1]} input channels, the map before "
                             f"has {in_shape[0]} ({' x '.join(map(str, in_shape))})")
    kernel = (int(w.shape[2]), int(w.shape[3]))
    stride = _pair(name, "stride", node.stride)
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1) and all(k % 2 for k in kernel):
            padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        else:
            raise NIRImportError(f"node {name!r}: padding {padding!r} with kernel {list(kernel)} and "
                                 f"stride {list(stride)} is not symmetric zero padding (not supported)")
    padding = _pair(name, "padding", padding)
    if node.input_shape is not None and _shape_list(node.input_shape) != list(in_shape[1:]):
        raise NIRImportError(f"node {name!r}: input_shape {_shape_list(node.input_shape)} differs "
                             f"from the map before it, {' x '.join(map(str, in_shape))}")
    out_hw = _window(name, "convolution", in_shape, kernel, stride, padding)
    b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
    if b.size == 1:
        b = np.full(w.shape[0], float(b[0]))
    if b.shape != (w.shape[0],) or not np.all(np.isfinite(b)):
        raise NIRImportError(f"node {name!r}: bias must be {w.shape[0]} finite values (one per output "
                             f"channel), got shape {list(b.shape)}")
    return w, b, kernel, stride, padding, (int(w.shape[0]), *out_hw)


def _pool_geometry(name, node, in_shape) -> tuple:
    kernel = _pair(name, "kernel_size", node.kernel_size)
    stride = _pair(name, "stride", node.stride)
    padding = _pair(name, "padding", node.padding)
    out_hw = _window(name, "pooling", in_shape, kernel, stride, padding)
    return kernel, stride, padding, (in_shape[0], *out_hw)


def _or_threshold(name, node, pool_name, pool, out_shape) -> None:
    """A Threshold after a pool of spikes is OR pooling iff it fires exactly when the window holds
    at least one spike: a sum ``n`` of 0/1 spikes fires on ``n > t`` (NIR's strict rule), so
    ``0 <= t < 1``; an average ``n / (K_h K_w)`` needs ``0 <= t K_h K_w < 1`` (with any divisor up
    to ``K_h K_w`` at the padded borders)."""
    t = np.asarray(node.threshold, dtype=np.float64).reshape(-1)
    n = int(np.prod(out_shape))
    if t.size not in (1, n):
        raise NIRImportError(f"node {name!r}: threshold has {t.size} values, the pooled map "
                             f"{' x '.join(map(str, out_shape))} has {n}")
    scale = 1.0 if isinstance(pool, nir.SumPool2d) else float(np.prod(_pair(pool_name, "kernel_size",
                                                                            pool.kernel_size)))
    st = t * scale
    if not (np.all(np.isfinite(t)) and np.all(st >= 0) and np.all(st < 1)):
        bad = float(t[~(np.isfinite(t) & (st >= 0) & (st < 1))][0])
        bound = "1" if scale == 1 else f"1/{scale:g}"
        raise NIRImportError(f"node {name!r}: threshold {bad:g} after {type(pool).__name__} "
                             f"{pool_name!r} is not OR pooling (needs 0 <= threshold < {bound}: a "
                             f"spike iff any input of the window spiked); not supported by the core")


def _fold_pool_into_dense(name, w, pool_name, pool, kernel, stride, padding, in_shape, out_shape):
    """Weights ``[out, C*Ho*Wo]`` of a dense node reading a pool's output -> weights ``[out, C*H*W]``
    reading the pooled map itself: exact when every input position lies in exactly one window."""
    c, h, wd = in_shape
    if stride != kernel or padding != (0, 0) or out_shape[1] * kernel[0] != h \
            or out_shape[2] * kernel[1] != wd:
        raise NIRImportError(f"node {name!r}: reads {type(pool).__name__} {pool_name!r} (kernel "
                             f"{list(kernel)}, stride {list(stride)}, padding {list(padding)} on "
                             f"{h} x {wd}) whose windows do not tile the map; folding it into the "
                             f"weights would need weights other than +-c (not supported)")
    scale = 1.0 if isinstance(pool, nir.SumPool2d) else 1.0 / (kernel[0] * kernel[1])
    folded = w.reshape(w.shape[0], c, out_shape[1], out_shape[2])
    folded = np.repeat(np.repeat(folded, kernel[0], axis=2), kernel[1], axis=3)
    return folded.reshape(w.shape[0], c * h * wd) * scale


def _linear_path(graph: nir.NIRGraph) -> tuple[str, str, list]:
    """The node names of the graph's single path from its Input to its Output."""
    nodes = graph.nodes
    succ, pred = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRImportError(f"edge ({a!r}, {b!r}): node {end!r} does not exist")
        if a == b:
            raise NIRImportError(f"node {a!r}: recurrent edge to itself is not supported")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"graph: needs exactly one Input and one Output node, found "
                             f"{len(inputs)} Input ({', '.join(inputs) or '-'}) and {len(outputs)} "
                             f"Output ({', '.join(outputs) or '-'})")
    order, seen, cur = [], set(), inputs[0]
    while True:
        if len(pred[cur]) > (0 if cur == inputs[0] else 1):
            raise NIRImportError(f"node {cur!r}: incoming edges from {', '.join(map(repr, pred[cur]))}; "
                                 f"recurrent or merging edges are not supported (feed-forward chains only)")
        order.append(cur)
        seen.add(cur)
        if cur == outputs[0]:
            break
        if len(succ[cur]) != 1:
            what = "no outgoing edge" if not succ[cur] else \
                f"{len(succ[cur])} outgoing edges ({', '.join(map(repr, succ[cur]))})"
            raise NIRImportError(f"node {cur!r}: {what}; only a single chain from input to output "
                                 f"is supported")
        nxt = succ[cur][0]
        if nxt in seen:
            raise NIRImportError(f"node {nxt!r}: recurrent edge from {cur!r} is not supported")
        cur = nxt
    for name in nodes:
        if name not in seen:
            raise NIRImportError(f"node {name!r}: not on the path from {inputs[0]!r} to {outputs[0]!r}")
    return inputs[0], outputs[0], order


def parse_chain(graph: nir.NIRGraph) -> Chain:
    """Check that ``graph`` is a feed-forward chain the core can run; return it as a :class:`Chain`."""
    if not isinstance(graph, nir.NIRGraph):
        raise NIRImportError(f"graph: expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes = graph.nodes
    for name, node in nodes.items():
        _check_node_type(name, node)
    input_name, _, order = _linear_path(graph)

    in_type = (nodes[input_name].input_type or {}).get("input")
    if in_type is None:
        raise NIRImportError(f"node {input_name!r}: input shape is not stated")
    shape = _shape_list(in_type)            # the NIR shape of the value flowing along the chain
    units = int(np.prod(shape))
    input_map = None if _non_unit_dims(shape) <= 1 else _as_map(shape)
    if _non_unit_dims(shape) > 1 and input_map is None:
        raise NIRImportError(f"node {input_name!r}: input shape {shape} is neither 1-D nor a "
                             f"[C, H, W] map")
    # What the current value is: "input", "spikes" (of a layer), "synapse" (a synapse's output,
    # waiting for its neuron: ``pending``) or "pool" (a pool of spikes: ``pool``).
    source, pending, pool = "input", None, None
    spike_map = None                        # (C, H, W) of the last layer's spikes, if a map
    layers = []

    def flat_size(name, what):
        if _non_unit_dims(shape) > 1:
            raise NIRImportError(f"node {name!r}: {what} reads a value of shape {shape}; a dense "
                                 f"layer reads a 1-D vector (flatten it first)")
        return int(np.prod(shape))

    for name in order[1:-1]:
        node = nodes[name]
        if isinstance(node, nir.Flatten):
            if source == "synapse":
                raise NIRImportError(f"node {name!r}: Flatten between synapse {pending['synapse']!r} "
                                     f"and its neuron is not supported")
            start, end = int(node.start_dim), int(node.end_dim)
            try:
                out = _shape_list(calc_flatten_output(shape, start, end))
            except (IndexError, ValueError, TypeError):
                out = None
            if out is None or int(np.prod(out)) != int(np.prod(shape)) or _non_unit_dims(out) > 1:
                raise NIRImportError(f"node {name!r}: Flatten of shape {shape} (start_dim {start}, "
                                     f"end_dim {end}) is not supported (only a flatten to 1-D, in "
                                     f"the flat order c*H*W + y*W + x)")
            declared = (node.input_type or {}).get("input")
            if declared is not None and int(np.prod(_shape_list(declared))) != int(np.prod(shape)):
                raise NIRImportError(f"node {name!r}: input_type {_shape_list(declared)} differs from "
                                     f"the value before it, of shape {shape}")
            shape = out
            continue
        if source == "synapse" and not isinstance(node, NEURONS):
            raise NIRImportError(f"node {name!r}: follows synapse node {pending['synapse']!r} with no "
                                 f"neuron between (not supported)")
        if isinstance(node, SYNAPSES):
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 2:
                raise NIRImportError(f"node {name!r}: weight must be 2-D [out, in], got shape {list(w.shape)}")
            size = flat_size(name, type(node).__name__)
            if w.shape[1] != size:
                raise NIRImportError(f"node {name!r}: weight has {w.shape[1]} inputs, the layer before "
                                     f"has {size} outputs")
            if not np.all(np.isfinite(w)):
                raise NIRImportError(f"node {name!r}: weight has non-finite values")
            if isinstance(node, nir.Affine):
                b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
                if b.size == 1:
                    b = np.full(w.shape[0], float(b[0]))
                if b.shape != (w.shape[0],) or not np.all(np.isfinite(b)):
                    raise NIRImportError(f"node {name!r}: bias must be {w.shape[0]} finite values, "
                                         f"got shape {list(b.shape)}")
            else:
                b = np.zeros(w.shape[0])
            folded = []
            if source == "pool":
                w = _fold_pool_into_dense(name, w, pool["name"], pool["node"], pool["kernel"],
                                          pool["stride"], pool["padding"], pool["in_shape"],
                                          pool["out_shape"])
                folded = [pool["name"]]
            pending = dict(synapse=name, kind="dense", weight=w, bias=b, folded=folded)
            shape, source, pool = [w.shape[0]], "synapse", None
            continue
        if isinstance(node, nir.Conv2d):
            if source == "pool":
                raise NIRImportError(f"node {name!r}: Conv2d reads the sums of {type(pool['node']).__name__} "
                                     f"{pool['name']!r}; pooled sums into a convolution are not "
                                     f"supported (end the pool in a Threshold at 0.5: OR pooling)")
            in_map = _as_map(shape) if len(shape) >= 2 else None
            if in_map is None:
                raise NIRImportError(f"node {name!r}: Conv2d reads a value of shape {shape}, not a "
                                     f"[C, H, W] map")
            w, b, kernel, stride, padding, out_shape = _conv_geometry(name, node, in_map)
            pending = dict(synapse=name, kind="conv2d", weight=w, bias=np.repeat(b, out_shape[1] * out_shape[2]),
                           in_shape=in_map, out_shape=out_shape, kernel=kernel, stride=stride,
                           padding=padding, folded=[])
            shape, source = list(out_shape), "synapse"
            continue
        if isinstance(node, POOLS):
            if source == "pool":
                raise NIRImportError(f"node {name!r}: follows {type(pool['node']).__name__} {pool['name']!r} "
                                     f"directly (end each pool in a Threshold: OR pooling)")
            in_map = _as_map(shape) if len(shape) >= 2 else None
            if source != "spikes" or spike_map is None or in_map is None:
                what = "the input" if source == "input" else f"a value of shape {shape}"
                raise NIRImportError(f"node {name!r}: {type(node).__name__} of {what} is not supported "
                                     f"(the core pools the spikes of a conv2d or pool2d layer)")
            kernel, stride, padding, out_shape = _pool_geometry(name, node, in_map)
            pool = dict(name=name, node=node, kernel=kernel, stride=stride, padding=padding,
                        in_shape=in_map, out_shape=out_shape)
            shape, source = list(out_shape), "pool"
            continue
        if isinstance(node, nir.Threshold):
            if source != "pool":
                raise NIRImportError(f"node {name!r}: Threshold is not supported by the core except "
                                     f"after SumPool2d or AvgPool2d (OR pooling; supported: {SUPPORTED})")
            _or_threshold(name, node, pool["name"], pool["node"], pool["out_shape"])
            layers.append(ChainLayer(synapse=pool["name"], neuron=name, weight=np.zeros(0),
                                     bias=np.zeros(0), node=node, kind="pool2d",
                                     in_shape=pool["in_shape"], out_shape=pool["out_shape"],
                                     kernel=pool["kernel"], stride=pool["stride"], padding=pool["padding"]))
            spike_map, source, pool = pool["out_shape"], "spikes", None
            continue
        # a neuron node
        if source == "pool":
            p = pool
            if p["in_shape"][0] != 1:
                raise NIRImportError(f"node {name!r}: {type(node).__name__} reads the sums of "
                                     f"{type(p['node']).__name__} {p['name']!r} over {p['in_shape'][0]} "
                                     f"channels: a per-channel (depthwise) sum is not a conv2d layer "
                                     f"of +-1 weights (end the pool in a Threshold at 0.5: OR pooling)")
            avg = isinstance(p["node"], nir.AvgPool2d)
            if avg and p["padding"] != (0, 0):
                raise NIRImportError(f"node {name!r}: reads AvgPool2d {p['name']!r} with padding, whose "
                                     f"divisor at the borders NIR does not state (not supported)")
            w = np.full((1, 1, *p["kernel"]), 1.0 / (p["kernel"][0] * p["kernel"][1]) if avg else 1.0)
            pending = dict(synapse=p["name"], kind="conv2d", weight=w,
                           bias=np.zeros(int(np.prod(p["out_shape"]))), in_shape=p["in_shape"],
                           out_shape=p["out_shape"], kernel=p["kernel"], stride=p["stride"],
                           padding=p["padding"], folded=[])
            source, pool = "synapse", None
        if source != "synapse":
            raise NIRImportError(f"node {name!r}: {type(node).__name__} must follow an Affine, Linear "
                                 f"or Conv2d node")
        layer = ChainLayer(neuron=name, node=node, **pending)
        layers.append(layer)
        spike_map = layer.out_shape
        source, pending = "spikes", None
    if source == "synapse":
        raise NIRImportError(f"node {pending['synapse']!r}: not followed by a spiking neuron node "
                             f"(every core layer ends in LIF, CubaLIF or IF)")
    if source == "pool":
        raise NIRImportError(f"node {pool['name']!r}: {type(pool['node']).__name__} at the end of the "
                             f"graph (the output layer needs neurons)")
    if not layers:
        raise NIRImportError("graph: no layer (an Affine, Linear or Conv2d node followed by LIF, "
                             "CubaLIF or IF)")
    if layers[-1].kind == "pool2d":
        raise NIRImportError(f"node {layers[-1].neuron!r}: the graph ends in pooling (the output "
                             f"layer needs neurons: LIF, CubaLIF or IF)")
    return Chain(units=units, input_shape=layers[0].in_shape if layers[0].kind == "conv2d" else None,
                 layers=layers, order=order[1:-1])


def _vec(layer: ChainLayer, field: str) -> np.ndarray:
    n = layer.size
    x = np.asarray(getattr(layer.node, field), dtype=np.float64).reshape(-1)
    if x.size == 1:
        x = np.full(n, float(x[0]))
    elif layer.kind == "conv2d" and x.size == layer.channels and x.size != n:   # per channel
        x = np.repeat(x, n // layer.channels)
    if x.shape != (n,):
        raise NIRImportError(f"node {layer.neuron!r}: {field} has {x.size} values, the layer has {n} neurons")
    if not np.all(np.isfinite(x)):
        raise NIRImportError(f"node {layer.neuron!r}: {field} has non-finite values")
    return x


@dataclass
class Dynamics:
    """A layer's update in discrete steps (float, per neuron):

    ``c = alpha c + g_in (W x + b)`` (current layers), then
    ``v = beta v + drive + g_in (W x + b)`` (no current) or ``v = beta v + drive + g_cv c``;
    spike when ``v > theta``, then the reset.
    """
    kind: str
    current: bool
    beta: np.ndarray
    alpha: np.ndarray | None
    g_in: np.ndarray
    g_cv: np.ndarray | None
    drive: np.ndarray
    theta: np.ndarray
    v_reset: np.ndarray
    reset: str
    fire_once: bool


def _positive(layer, field, x):
    if np.any(x <= 0):
        raise NIRImportError(f"node {layer.neuron!r}: {field} must be > 0, found {float(x[x <= 0][0])}")
    return x


def _decay(layer, field, tau, dt, discretization):
    """(state factor per step, input factor per step divided by tau/dt) for tau d/dt x = -x + u."""
    a = dt / _positive(layer, field, tau)
    if discretization == "exp":
        f = np.exp(-a)
        return f, 1.0 - f
    if np.any(a > 1):
        raise NIRImportError(f"node {layer.neuron!r}: dt/{field} = {float(a.max()):.3g} > 1, forward Euler "
                             f"decays past zero (check dt, or use discretization='exp')")
    return 1.0 - a, a


def reset_rule(layer: ChainLayer, reset) -> str:
    """The reset to use: explicit (str or {node: str}); else a ``reset_rule`` hint in the node's
    metadata; else NIR's own rule (reset to v_reset), which the core has for v_reset = 0."""
    if isinstance(reset, dict):
        reset = reset.get(layer.neuron, "auto")
    if reset != "auto":
        if reset not in RESETS:
            raise NIRImportError(f"node {layer.neuron!r}: reset must be one of {', '.join(RESETS)} or "
                                 f"'auto', got {reset!r}")
        return reset
    hint = (layer.node.metadata or {}).get("reset_rule")
    hint = hint.decode() if isinstance(hint, bytes) else hint
    if isinstance(hint, str) and hint in RESETS:
        return hint
    v_reset = _vec(layer, "v_reset")
    if np.any(v_reset != 0):
        raise NIRImportError(f"node {layer.neuron!r}: v_reset = {float(v_reset[v_reset != 0][0]):g} is not "
                             f"0; the core resets to 0, by subtraction or not at all (pass reset= "
                             f"'zero', 'subtract' or 'none' to choose)")
    return "zero"


def dynamics(layer: ChainLayer, dt: float, discretization: str = "euler", reset="auto") -> Dynamics:
    """The discrete-time update of ``layer`` with step ``dt`` (see :class:`Dynamics`)."""
    if discretization not in DISCRETIZATIONS:
        raise NIRImportError(f"discretization: must be one of {', '.join(DISCRETIZATIONS)}, got {discretization!r}")
    node = layer.node
    n = layer.size
    theta = _vec(layer, "v_threshold")
    hint = (node.metadata or {}).get("fire_once", False)
    fire_once = bool(hint) if isinstance(hint, (bool, np.bool_)) else False
    rule = reset_rule(layer, reset)
    v_reset = _vec(layer, "v_reset")
    if isinstance(node, nir.IF):
        r = _vec(layer, "r")
        return Dynamics("IF", False, np.ones(n), None, dt * r, None, np.zeros(n), theta, v_reset,
                        rule, fire_once)
    if isinstance(node, nir.LIF):
        beta, gain = _decay(layer, "tau", _vec(layer, "tau"), dt, discretization)
        return Dynamics("LIF", False, beta, None, gain * _vec(layer, "r"), None,
                        gain * _vec(layer, "v_leak"), theta, v_reset, rule, fire_once)
    alpha, gain_c = _decay(layer, "tau_syn", _vec(layer, "tau_syn"), dt, discretization)
    beta, gain_v = _decay(layer, "tau_mem", _vec(layer, "tau_mem"), dt, discretization)
    return Dynamics("CubaLIF", True, beta, alpha, gain_c * _vec(layer, "w_in"), gain_v * _vec(layer, "r"),
                    gain_v * _vec(layer, "v_leak"), theta, v_reset, rule, fire_once)


FOREIGN_DEFAULT_DT = 1e-4   # what snnTorch's exporter assumes (and does not write into the graph)


def read_nir(path) -> nir.NIRGraph:
    """Read a NIR (HDF5) file; failures are one-line NIRImportErrors."""
    try:
        try:
            return nir.read(path)
        except ValueError as exc:
            # NIR's type inference gets Conv2d output shapes with non-square kernels wrong
            # (export.NON_SQUARE_KERNELS); parse_chain checks every shape itself.
            if "type mismatch" not in str(exc):
                raise
            return nir.read(path, type_check=False)
    except FileNotFoundError:
        raise NIRImportError(f"{path}: file: missing") from None
    except Exception as exc:  # h5py and nir raise many types for malformed files
        first = (str(exc).splitlines() or [""])[0][:200]
        raise NIRImportError(f"{path}: not a readable NIR file ({type(exc).__name__}: {first})") from None


def resolve_dt(graph: nir.NIRGraph, dt=None) -> tuple[float, str]:
    """The time step: ``dt`` if given, else the graph's ``metadata['dt']``, else snnTorch's 1e-4 s."""
    if dt is None:
        meta_dt = (graph.metadata or {}).get("dt")
        if meta_dt is not None:
            dt, source = meta_dt, "graph metadata"
        else:
            dt, source = FOREIGN_DEFAULT_DT, "default (snnTorch's exporter convention)"
    else:
        source = "argument"
    try:
        dt = float(np.asarray(dt).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise NIRImportError(f"dt: must be a positive number, got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise NIRImportError(f"dt: must be a positive number, got {dt!r}")
    return dt, source
