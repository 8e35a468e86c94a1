"""Core speed on MNIST test images: cycles measured in RTL simulation against the event bound.

    python -m bsnn.bench.core_speed --model models/default --hw hdl/boards/ulx3s-85f.toml \
        --limit 100 --json build/core_speed.json [--fmax-mhz 100]

Every image runs through the generated Verilog (the compiled Verilator harness of
``bsnn eval --engine rtl``) and is checked bit-exact against the golden model; the cycle count is
the core's own ``cycles`` output. Per inference the JSON holds the cycles, the SOPs (semantics
section 7), SOPs per cycle, the event bound of docs/performance.md and the ratio cycles / bound;
the summary adds the SOPs per *synaptic* cycle (cycles in which the synapse unit issues a weight
word: ``sum_l E_l * ceil(N_l / P)``), and with ``--fmax-mhz`` the inferences per second.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bsnn.firmware_export.outputs import previous_json, write_file
from bsnn.firmware_export.paths import source_commit


def measure(model, hw, dataset="mnist", split="test", limit=100, simulator="verilator",
            fmax_mhz=None, progress=False, run_trace=True) -> dict:
    """Cycles, SOPs and memory reads per inference, measured in RTL simulation on the first
    ``limit`` images (bit-exact with the golden model, or ``SystemExit``). ``run_trace``: the
    run-time GLOBAL trace bit (``False``: no SPIKE records, the core's rate for a host that only
    wants the results; a build with ``trace = false`` has none either way)."""
    import numpy as np

    from bsnn.training.data import load_encoded
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.firmware_export.golden import run_golden
    from bsnn.hdl.config import CoreGeometry
    from bsnn.hdl.generate import cycles_bound, layer_work, unit_counts
    from bsnn.sim.rtl_eval import rtl_evaluate

    bundle = load_bundle(model)
    geom = CoreGeometry.from_bundle(bundle, hw)
    data = load_encoded(bundle, dataset, split, limit)
    gold = run_golden(bundle, data.on, data.off)
    rtl = rtl_evaluate(bundle, data.on, data.off, simulator=simulator, progress=progress, hw=hw,
                       trace=run_trace)
    if not rtl["bit_exact"]:
        raise SystemExit(f"core_speed: RTL differs from the golden model: {rtl['mismatches'][:3]}")
    # SPIKE records of each inference (every layer's spikes, trace on)
    records = sum(sp.reshape(sp.shape[0], sp.shape[1], -1).sum(dim=(0, 2)) for sp in gold.spikes)
    reads = memory_reads(geom, bundle.time_steps)
    per = []
    for b, cyc in enumerate(rtl["cycles"].tolist()):
        events = gold.events_per_layer[:, b].tolist()
        sops = int(gold.sops[b])
        if geom.is_spatial:
            # (per source unit: a conv2d layer's work is each event's taps, a pool2d layer's
            # its windows; docs/semantics.md 10.7, as bsnn.sim.rtl_eval counts them)
            counts = unit_counts(bundle, data.on, data.off, gold.spikes, b)
            bound = cycles_bound(geom, bundle.time_steps, events, counts)
            work = [layer_work(geom, l, c) for l, c in enumerate(counts)]
            syn_cycles = sum(cyc for cyc, _ in work)
            weight_words = sum(cyc for (cyc, _), k in zip(work, geom.kinds) if k != "pool2d")
        else:
            bound = cycles_bound(geom, bundle.time_steps, events)
            syn_cycles = weight_words = sum(int(c) * int(e) for c, e in zip(geom.chunks, events))
        per.append({"cycles": int(cyc), "sops": sops, "sops_per_cycle": sops / cyc,
                    "cycles_bound": bound, "bound_ratio": cyc / bound,
                    "synaptic_cycles": syn_cycles, "events_per_layer": [int(e) for e in events],
                    "spike_records": int(records[b]),
                    "memory_reads": reads(syn_cycles, weight_words)})
    cycles = np.array([p["cycles"] for p in per], dtype=float)
    ratios = np.array([p["bound_ratio"] for p in per])
    sops = np.array([p["sops"] for p in per], dtype=float)
    syn = np.array([p["synaptic_cycles"] for p in per], dtype=float)
    summary = {
        "model": str(model), "dataset": dataset, "split": split, "samples": len(per),
        "sizes": list(geom.sizes), "time_steps": bundle.time_steps,
        "hardware": hw.to_dict(), "lanes_P": geom.lanes, "neuron_lanes_U": geom.neuron_lanes,
        "bit_exact": True, "accuracy": float(np.mean(np.array(rtl["predictions"])
                                                    == data.labels.numpy())),
        "cycles_mean": float(cycles.mean()), "cycles_max": int(cycles.max()),
        "cycles_bound_mean": float(np.mean([p["cycles_bound"] for p in per])),
        "bound_ratio_mean": float(ratios.mean()), "bound_ratio_max": float(ratios.max()),
        "sops_mean": float(sops.mean()),
        "input_events_mean": float(np.mean([p["events_per_layer"][0] for p in per])),
        "spike_records_mean": float(np.mean([p["spike_records"] for p in per])),
        "sops_per_cycle": float(sops.sum() / cycles.sum()),
        "sops_per_synaptic_cycle": float(sops.sum() / max(1.0, syn.sum())),
        "synaptic_lane_use": float(sops.sum() / max(1.0, syn.sum()) / geom.lanes),
        "run_trace": bool(run_trace and geom.trace),
        "source_commit": source_commit(),
        "memory_reads_mean": {k: float(np.mean([p["memory_reads"][k] for p in per]))
                              for k in per[0]["memory_reads"]},
    }
    if fmax_mhz:
        summary["fmax_mhz"] = float(fmax_mhz)
        summary["inferences_per_second"] = float(fmax_mhz) * 1e6 / float(cycles.mean())
        summary["inferences_per_second_worst"] = float(fmax_mhz) * 1e6 / float(cycles.max())
    return {"summary": summary, "per_inference": per}


def memory_reads(geom, time_steps: int):
    """Per inference, the reads of each memory (the inputs of an energy estimate) as a function
    of the synaptic cycles (``sum_l ceil(N_l / P) * E_l`` of a dense build; in a convolutional
    build each event's taps times ``ceil(C_out / P)``, and one cycle per pool2d window, which
    reads no weight word: ``weight_words``): one weight word (``P`` bits) and one accumulator
    word per synaptic cycle; per step and layer the drain
    reads the accumulator word of each group of ``U`` neurons, and every group's state and
    parameters are read once in each of the ``U`` banks (docs/architecture.md, dataflow)."""
    groups = sum(geom.groups) * time_steps

    def reads(synaptic_cycles: int, weight_words: int | None = None) -> dict:
        weight_words = synaptic_cycles if weight_words is None else weight_words
        return {"weight_words": weight_words, "weight_bits": weight_words * geom.lanes,
                "accumulator_words": synaptic_cycles + groups,
                "accumulator_bits": (synaptic_cycles + groups) * geom.lanes * geom.syn_w,
                "neuron_state_words": groups * geom.neuron_lanes,
                "parameter_words": 2 * groups * geom.neuron_lanes}
    return reads


def main(argv=None) -> int:
    from bsnn.hdl.config import HardwareConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/default", type=Path)
    p.add_argument("--hw", type=Path, help="hardware config TOML (e.g. hdl/boards/icebreaker.toml)")
    p.add_argument("--lanes", type=int, help="P (overrides --hw)")
    p.add_argument("--neuron-lanes", type=int, help="U (overrides --hw)")
    p.add_argument("--trace", choices=["on", "off"], help="build-time trace (overrides --hw)")
    p.add_argument("--run-trace", choices=["on", "off"], default="on",
                   help="run-time GLOBAL trace bit (off: no SPIKE records; default on)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=100, help="first N images (default 100)")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--fmax-mhz", type=float, help="clock for inferences/s (e.g. nextpnr's Fmax)")
    p.add_argument("--json", type=Path, default=Path("build/core_speed.json"))
    args = p.parse_args(argv)
    from bsnn.firmware_export.bundle import load_bundle
    hw = HardwareConfig.from_toml(args.hw) if args.hw else HardwareConfig()
    hw = hw.for_bundle(load_bundle(args.model))     # a board's U is for dense networks
    if args.lanes:
        hw = hw.replace(lanes=args.lanes)
    if args.neuron_lanes:
        hw = hw.replace(neuron_lanes=args.neuron_lanes)
    if args.trace:
        hw = hw.replace(trace=args.trace == "on")
    result = measure(args.model, hw, args.dataset, args.split, args.limit, args.simulator,
                     args.fmax_mhz, run_trace=args.run_trace == "on")
    write_file(args.json, (json.dumps(result, indent=1) + "\n").encode(), replaces=previous_json)
    s = result["summary"]
    line = (f"{s['samples']} images, P={s['lanes_P']} U={s['neuron_lanes_U']}: "
            f"{s['cycles_mean']:.0f} cycles/inference (bound {s['cycles_bound_mean']:.0f}, "
            f"ratio {s['bound_ratio_mean']:.3f} mean, {s['bound_ratio_max']:.3f} max), "
            f"{s['sops_per_cycle']:.2f} SOPs/cycle, {s['sops_per_synaptic_cycle']:.2f} SOPs per "
            f"synaptic cycle ({100 * s['synaptic_lane_use']:.0f} % of P)")
    if "inferences_per_second" in s:
        line += f", {s['inferences_per_second']:.0f} inferences/s at {s['fmax_mhz']:.1f} MHz"
    print(line)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
