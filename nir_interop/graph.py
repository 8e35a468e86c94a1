"""Reading a NIR graph as the chain of layers the core can run, and its discrete-time dynamics.

Shared by the importer (which compiles the chain to integers) and the float reference simulator
(which runs the same discretisation without quantisation, to measure what compilation costs).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import nir
import numpy as np

from .errors import NIRImportError

SUPPORTED = "Input, Affine, Linear, LIF, CubaLIF, IF, Flatten (to 1-D, trivial), Output"
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
SYNAPSES = (nir.Affine, nir.Linear)
DISCRETIZATIONS = ("euler", "exp")
RESETS = ("subtract", "zero", "none")


@dataclass
class ChainLayer:
    """One core layer: a synapse node (weights ``[out, in]``, bias) followed by a neuron node."""
    synapse: str
    neuron: str
    weight: np.ndarray      # float64 [out, in]
    bias: np.ndarray        # float64 [out]
    node: object            # the neuron node

    @property
    def size(self) -> int:
        return int(self.weight.shape[0])


def _non_unit_dims(shape) -> int:
    return int(sum(1 for d in np.asarray(shape).reshape(-1) if int(d) != 1))


def _check_node_type(name, node):
    if isinstance(node, nir.NIRGraph):
        raise NIRImportError(f"node {name!r}: nested NIRGraph (a subgraph, e.g. a recurrent layer) "
                             f"is not supported")
    if isinstance(node, nir.Flatten):
        shape = (node.input_type or {}).get("input")
        if shape is None:
            raise NIRImportError(f"node {name!r}: Flatten with unknown input shape is not supported")
        if _non_unit_dims(shape) > 1:
            raise NIRImportError(f"node {name!r}: Flatten of shape {list(np.asarray(shape).tolist())} "
                                 f"is not supported (only trivial Flatten to 1-D; flatten the input "
                                 f"before export)")
        return
    if not isinstance(node, (nir.Input, nir.Output) + SYNAPSES + NEURONS):
        raise NIRImportError(f"node {name!r}: {type(node).__name__} is not supported by the core "
                             f"(supported: {SUPPORTED})")


def parse_chain(graph: nir.NIRGraph) -> tuple[int, list[ChainLayer]]:
    """Check that ``graph`` is a feed-forward chain the core can run; return (N_0, layers)."""
    if not isinstance(graph, nir.NIRGraph):
        raise NIRImportError(f"graph: expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes = graph.nodes
    for name, node in nodes.items():
        _check_node_type(name, node)
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

    in_shape = nodes[inputs[0]].input_type["input"]
    if _non_unit_dims(in_shape) > 1:
        raise NIRImportError(f"node {inputs[0]!r}: input shape {list(np.asarray(in_shape).tolist())} "
                             f"is not 1-D (flatten the input before export)")
    size = input_size = int(np.prod(in_shape))
    layers, pending = [], None
    for name in order[1:-1]:
        node = nodes[name]
        if isinstance(node, nir.Flatten):
            continue
        if isinstance(node, SYNAPSES):
            if pending is not None:
                raise NIRImportError(f"node {name!r}: follows synapse node {pending[0]!r} with no "
                                     f"neuron between (not supported)")
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 2:
                raise NIRImportError(f"node {name!r}: weight must be 2-D [out, in], got shape {list(w.shape)}")
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
            pending = (name, w, b)
            continue
        if pending is None:
            raise NIRImportError(f"node {name!r}: {type(node).__name__} must follow an Affine or Linear node")
        layers.append(ChainLayer(synapse=pending[0], neuron=name, weight=pending[1], bias=pending[2], node=node))
        size, pending = pending[1].shape[0], None
    if pending is not None:
        raise NIRImportError(f"node {pending[0]!r}: not followed by a spiking neuron node "
                             f"(every core layer ends in LIF, CubaLIF or IF)")
    if not layers:
        raise NIRImportError("graph: no layer (an Affine or Linear node followed by LIF, CubaLIF or IF)")
    return input_size, layers


def _vec(layer: ChainLayer, field: str) -> np.ndarray:
    n = layer.size
    x = np.asarray(getattr(layer.node, field), dtype=np.float64).reshape(-1)
    if x.size == 1:
        x = np.full(n, float(x[0]))
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
        return nir.read(path)
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
