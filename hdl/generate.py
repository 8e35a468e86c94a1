"""Generation of a core build from a bundle: Verilog, memory images, hardware manifest."""
from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape

from .config import CYCLES_WIDTH, BuildMismatch, CoreGeometry, HardwareConfig, build_key, check_fits
from .core import BSNNCore
from .images import (bias_image, config_writes_for, global_words, layer_mode_words,
                     threshold_image, weight_words)
from .layouts import (AccumulatorLayout, ConfigTarget, ConfigWriteLayout, ErrorBit, GlobalAddress,
                      InputEventLayout, LayerModeLayout, NeuronStateLayout, OutputStatsLayout,
                      ResultKind, ResultLayout, SpikeGroupLayout)

__all__ = ["generate", "config_writes", "build_key", "check_fits", "BuildMismatch",
           "hardware_manifest", "cycle_estimate", "cycles_bound", "layer_work", "unit_counts", "unit_taps", "VERILOG_NAME", "MANIFEST_NAME"]

VERILOG_NAME = "bsnn_core.v"
MANIFEST_NAME = "hardware.json"
MANIFEST_FORMAT = "bsnn-hardware"
MANIFEST_VERSION = 1
#: Word width of ``global.hex`` (every GLOBAL register fits in it).
GLOBAL_WORD_WIDTH = 32


def config_writes(bundle, hw_config: HardwareConfig | None = None, build=None) -> list[tuple[int, int, int]]:
    """``(target, address, data)`` writes that load ``bundle`` into a build through ``i_config``.

    ``build`` (a hardware manifest dict, build-key dict or :class:`CoreGeometry`) is the build
    to load into; by default the build ``generate(bundle, hw_config)`` would make. Raises
    :class:`BuildMismatch` when the bundle does not fit.
    """
    if build is None:
        geom = CoreGeometry.from_bundle(bundle, hw_config)
    elif isinstance(build, CoreGeometry):
        geom = build
    else:
        geom = CoreGeometry.from_key(build.get("build_key", build))
    return config_writes_for(bundle, geom, trace=True)


def _hex_lines(values, width):
    digits = max(1, -(-width // 4))
    mask = (1 << width) - 1
    return "".join(f"{v & mask:0{digits}x}\n" for v in values)


def unit_taps(geom: CoreGeometry, l: int):
    """Per source unit of layer ``l`` (flat order), the taps an event there reaches: 1 for a
    dense layer, ``r_h(iy) * r_w(ix)`` for a conv2d layer (docs/semantics.md 10.6), the windows
    that hold it for a pool2d layer."""
    import numpy as np

    from bsnn.firmware_export.spatial import taps_per_position
    if geom.kinds[l] == "dense":
        return np.ones(geom.units_in[l], dtype=np.int64)
    _, (c, h, w), _, kernel, stride, padding = geom.spatial[l]
    rh = taps_per_position(h, kernel[0], stride[0], padding[0])
    rw = taps_per_position(w, kernel[1], stride[1], padding[1])
    return np.tile(np.outer(rh, rw).reshape(-1), c)


def layer_work(geom: CoreGeometry, l: int, counts) -> tuple[int, int]:
    """``(cycles, bound)`` of the synaptic work of the events into layer ``l``; ``counts``: the
    events per source unit (flat order, summed over any steps). ``cycles``: what the core
    spends (``ceil(N_l / P)`` per event of a dense layer, ``taps * ceil(C_out / P)`` of a conv2d
    layer, one per window of a pool2d layer, at least one cycle per event); ``bound``: the
    event bound's term (none for a pool2d layer; docs/semantics.md 10.7)."""
    import numpy as np
    taps = unit_taps(geom, l)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(taps)).sum(axis=0)
    pool = geom.kinds[l] == "pool2d"
    per = np.maximum(taps * (1 if pool else geom.chunks[l]), 1)
    bound = 0 if pool else int((counts * taps).sum()) * geom.chunks[l]
    return int((counts * per).sum()), bound


def unit_counts(bundle, on, off, spikes, b: int) -> list:
    """Per layer, the events per source unit ``[T, units]`` of sample ``b``: layer 1 from the
    input event counts ``on``/``off`` ``[T, B, N_0]`` (by ``input_polarity``), the others
    from the spikes of the layer below (``GoldenResult.spikes``)."""
    import numpy as np
    on = np.asarray(on[:, b], dtype=np.int64)
    off = np.zeros_like(on) if off is None else np.asarray(off[:, b], dtype=np.int64)
    first = np.concatenate([off, on], axis=1) if bundle.input_polarity == "channels" else on + off
    return [first] + [np.asarray(s[:, b], dtype=np.int64) for s in spikes[:-1]]


def cycle_estimate(geom: CoreGeometry, time_steps: int, events_per_layer, spikes=None,
                   trace: bool = True, counts=None) -> int:
    """Busy cycles of one inference without stalls or dropped events (docs/architecture.md):
    ``C + 1 - Q + N_L + D - 2 + T * (sum_l (G_l + D + 1)) + sum_l W_l + X``.

    ``W_l`` is the synaptic work of the events into layer ``l`` (:func:`layer_work`: for a
    dense layer ``ceil(N_l / P) * E_l``), ``C`` the accumulator words (``acc_depth``, the
    accumulator clear), ``Q`` the queues beyond a dense build's three (``extra_queues``: 0, -1
    when every layer is one weight word, the tap generator's 4 in a convolutional build). A
    convolutional build needs ``counts`` (per layer, the events per source unit and step,
    ``[T, units]``: :func:`unit_counts`); a dense one takes ``events_per_layer``.

    ``D = CoreGeometry.layer_latency`` (11 with the short neuron pipeline, 18 with the long one),
    ``G_l = ceil(N_l / U)`` neuron groups; with single-port neuron state
    (``neuron_state_memory``) every ``G`` above (and ``N_L``) is ``2 G - 1``
    (:meth:`CoreGeometry.update_cycles`). ``X`` (only with ``U > 1`` and
    the trace on) is the serialisation of SPIKE records: a group of ``U`` neurons with ``k > 1``
    spikes in one step takes ``k`` cycles instead of 1. ``spikes`` (per layer, ``[T, N_l]``
    0/1 arrays, as ``GoldenResult.spikes[l][:, b]``) is needed for ``X``.
    """
    U, C, L = geom.neuron_lanes, geom.acc_depth, geom.n_layers
    lat = geom.layer_latency
    per_step = sum(geom.update_cycles(n) + lat for n in geom.groups) + L
    if counts is not None:
        import numpy as np
        events = sum(layer_work(geom, l, c)[0] for l, c in enumerate(counts))
    else:
        events = sum(int(c) * int(e) for c, e in zip(geom.chunks, events_per_layer))
    extra = 0
    if U > 1 and trace and geom.trace:
        if spikes is None:
            raise ValueError("cycle_estimate: spikes are needed when neuron_lanes > 1 and trace is on")
        import numpy as np
        for l, n in enumerate(geom.layer_sizes):
            s = np.asarray(spikes[l], dtype=np.int64).reshape(time_steps, n)
            pad = np.zeros((time_steps, geom.groups[l] * U), dtype=np.int64)
            pad[:, :n] = s
            k = pad.reshape(time_steps, geom.groups[l], U).sum(axis=2)
            extra += int(np.maximum(k - 1, 0).sum())
    # (the events of step 0 advance through the tap generator's queues while the accumulators clear)
    clear = C + 1 - geom.extra_queues
    return clear + geom.update_cycles(geom.layer_sizes[-1]) + lat - 2 + time_steps * per_step + events + extra


def cycles_bound(geom: CoreGeometry, time_steps: int, events_per_layer, counts=None) -> int:
    """The event bound of docs/performance.md: every event into layer ``l`` touches its whole
    fan-out at ``P`` synapses per cycle, and every neuron is updated every step at ``U`` neurons
    per cycle: ``sum_l E_l * ceil(N_l / P) + T * sum_l ceil(N_l / U)``. With conv2d layers
    (``counts`` as for :func:`cycle_estimate`) a conv2d layer's term is ``sum_e taps(e) *
    ceil(C_out / P)`` and a pool2d layer has neither synaptic work nor neurons
    (docs/semantics.md 10.7)."""
    neurons = sum(n for k, n in zip(geom.kinds, geom.groups) if k != "pool2d")
    if counts is not None:
        events = sum(layer_work(geom, l, c)[1] for l, c in enumerate(counts))
    else:
        events = sum(int(c) * int(e) for c, e in zip(geom.chunks, events_per_layer))
    return events + int(time_steps) * neurons


def _fields(layout) -> dict:
    """``{field: [lsb, width]}`` of a struct layout, in bit order."""
    return {name: [field.offset, field.width] for name, field in layout}


def _image_widths(g: CoreGeometry) -> dict:
    """Word width of each memory image ``generate`` writes (``<name>.hex``)."""
    return {"weights": g.lanes, "bias": g.bias_width, "threshold": g.threshold_width,
            "layer_mode": LayerModeLayout().size, "global": GLOBAL_WORD_WIDTH}


def hardware_manifest(bundle, hw: HardwareConfig) -> dict:
    """The facts of the build ``generate(bundle, hw)`` makes, for people and tools
    (``hardware.json``): port payloads and memory words as the layouts of
    :mod:`bsnn.hdl.layouts` pack them, sizes from the :class:`CoreGeometry`."""
    g = CoreGeometry.from_bundle(bundle, hw)
    U = g.neuron_lanes
    events = InputEventLayout(g.idx_w)
    results = ResultLayout(g.idx_w, g.v_width)
    config = ConfigWriteLayout(g.cfg_addr_w, g.cfg_data_w)
    state = NeuronStateLayout(g.v_width, g.c_width, current=g.state_current, fired=g.state_fired)
    image_width = _image_widths(g)
    spike_group = SpikeGroupLayout(g.group_w, U)
    return {
        "format": MANIFEST_FORMAT,
        "schema_version": MANIFEST_VERSION,
        "top": "bsnn_core",
        "verilog": VERILOG_NAME,
        "hardware_config": hw.to_dict(),
        "build_key": g.key(),
        "ports": {
            "i_events": {"payload_width": events.size, "fields": _fields(events)},
            "o_results": {"payload_width": results.size, "fields": _fields(results),
                          "value_signed": Shape.cast(results["value"].shape).signed,
                          "kinds": {"SPIKE": ResultKind.SPIKE, "POTENTIAL": ResultKind.POTENTIAL,
                                    "CLASS": ResultKind.CLASS}},
            "i_config": {"payload_width": config.size, "fields": _fields(config),
                         "targets": {"WEIGHTS": ConfigTarget.WEIGHTS, "BIAS": ConfigTarget.BIAS,
                                     "THRESHOLD": ConfigTarget.THRESHOLD,
                                     "LAYER_MODE": ConfigTarget.LAYER_MODE,
                                     "GLOBAL": ConfigTarget.GLOBAL},
                         "global_addresses": {"TIME_STEPS": GlobalAddress.TIME_STEPS,
                                              "READOUT": GlobalAddress.READOUT,
                                              "MAX_INPUT_EVENTS": GlobalAddress.MAX_INPUT_EVENTS,
                                              "TRACE": GlobalAddress.TRACE},
                         "layer_mode_bits": _fields(LayerModeLayout())},
            "cycles_width": CYCLES_WIDTH,
            "error_bits": {"INDEX": ErrorBit.INDEX, "OVERFLOW": ErrorBit.OVERFLOW},
        },
        "widths": {"idx": g.idx_w, "v": g.v_width, "c": g.c_width, "bias": g.bias_width,
                   "acc": g.acc_w, "syn": g.syn_w, "cfg_addr": g.cfg_addr_w,
                   "cfg_data": g.cfg_data_w},
        "lanes": g.lanes,
        "memories": {
            "weights": {"file": "weights.hex", "depth": g.weight_depth,
                        "width": image_width["weights"],
                        "layer_base": list(g.weight_base), "chunks": list(g.chunks),
                        "address": "base_l + i * chunks_l + k; bit m -> neuron k*P + m"},
            "bias": {"file": "bias.hex", "depth": g.neuron_total, "width": image_width["bias"],
                     "layer_base": list(g.neuron_base)},
            "threshold": {"file": "threshold.hex", "depth": g.neuron_total,
                          "width": image_width["threshold"], "layer_base": list(g.neuron_base)},
            "layer_mode": {"file": "layer_mode.hex", "depth": g.n_layers,
                           "width": image_width["layer_mode"]},
            "global": {"file": "global.hex", "depth": len(global_words(bundle)),
                       "width": image_width["global"]},
            # Internal memories (no image): depths as addressed; one of depth 1 is built with 2.
            "accumulators": {"depth": g.acc_depth, "width": AccumulatorLayout(g.syn_w, g.lanes).size},
            "neuron_state": {"banks": U, "depth": g.bank_depth, "width": state.size,
                             "fields": _fields(state)},
            "output_stats": {"banks": U, "depth": g.groups[-1], "width": OutputStatsLayout().size},
            "spike_queue": {"depth": g.spike_queue_depth,
                            "width": spike_group.size if g.spike_queue_depth else 0,
                            "fields": _fields(spike_group) if g.spike_queue_depth else {}},
        },
        "neuron_lanes": U,
        "neuron_pipeline": g.neuron_pipeline, "neuron_latency": g.neuron_latency,
        "layer_latency": g.layer_latency,    # D of the cycle formula
        # (docs/architecture.md, "Cycle cost"; cycle_estimate implements it)
        "cycle_formula": "C + 1 - t + N_L + D - 2 + T * sum_l (G_l + D + 1) + sum_l W_l + X"
                         + (", with G_l -> 2 G_l - 1 and N_L -> 2 N_L - 1 (single-port neuron state)"
                            if g.state_memory != "bram" else ""),
        "cycles_bound": "sum_l chunks_l * E_l + T * sum_l G_l",
    }


def generate(bundle, hw_config: HardwareConfig | None = None, out_dir="build/verilog") -> dict:
    """Write ``bsnn_core.v``, the memory images (``$readmemh`` hex, one word per line) and the
    hardware manifest for ``bundle`` into ``out_dir``; return ``{name: path}``."""
    hw = HardwareConfig() if hw_config is None else hw_config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    core = BSNNCore(bundle, hw)
    g = core.geom
    text = verilog.convert(core, name="bsnn_core", emit_src=False, strip_internal_attrs=True)
    paths = {}

    def write(name, content):
        p = out / name
        p.write_text(content)
        paths[name] = str(p)

    width = _image_widths(g)
    write(VERILOG_NAME, text)
    write("weights.hex", _hex_lines(weight_words(bundle, g), width["weights"]))
    write("bias.hex", _hex_lines(bias_image(bundle), width["bias"]))
    write("threshold.hex", _hex_lines(threshold_image(bundle), width["threshold"]))
    write("layer_mode.hex", _hex_lines(layer_mode_words(bundle), width["layer_mode"]))
    write("global.hex", _hex_lines(global_words(bundle, True).values(), width["global"]))
    write(MANIFEST_NAME, json.dumps(hardware_manifest(bundle, hw), indent=2) + "\n")
    return paths
