"""Benchmark: simulated clock cycles per second of the same design on each RTL path.

    python -m bsnn.bench.sim_speed [--model models/default] [--samples 200] [--json docs/bench/sim_speed.json]

Paths measured in one run, on the same MNIST test images: the compiled Verilator harness (used
by ``bsnn eval --engine rtl``), cocotb on Verilator, and cocotb on Icarus Verilog. Compile time
is excluded (builds are cached and warmed first); every result is also checked bit-exact.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bsnn.training.data import load_encoded
from bsnn.firmware_export.bundle import load_bundle
from bsnn.firmware_export.outputs import previous_json, write_file
from bsnn.firmware_export.events import events_from_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.config import CoreGeometry
from bsnn.sim.check import compare_sample
from bsnn.sim.harness import compile_harness, run_harness
from bsnn.sim.rtl_eval import generated_design
from bsnn.sim.runner import build, run_job
from bsnn.sim.toolchain import availability


def _measure(label, simulate, bundle, golden, samples):
    t0 = time.perf_counter()
    results = simulate(samples)
    seconds = time.perf_counter() - t0
    cycles = sum(r["cycles"] for r in results)
    exact = all(compare_sample(bundle, golden, b, r) is None for b, r in enumerate(results))
    return {"path": label, "samples": len(samples), "seconds": round(seconds, 3),
            "simulated_cycles": int(cycles), "cycles_per_second": round(cycles / seconds),
            "samples_per_second": round(len(samples) / seconds, 2), "bit_exact": exact}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("--samples", type=int, default=200, help="samples for the compiled harness")
    p.add_argument("--cocotb-samples", type=int, default=10, help="samples for the cocotb paths")
    p.add_argument("--json", type=Path, default=Path("docs/bench/sim_speed.json"))
    args = p.parse_args(argv)

    bundle = load_bundle(args.model)
    data = load_encoded(bundle, "mnist", "test", args.samples)
    verilog, manifest = generated_design(bundle)
    key = manifest["build_key"]
    n = args.samples
    golden = run_golden(bundle, data.on, data.off)
    samples = [{"steps": [[list(e) for e in s] for s in events_from_counts(data.on, data.off, b)]}
               for b in range(n)]
    rows = []
    exe = compile_harness(verilog, CoreGeometry.from_key(key))
    rows.append(_measure("verilator (compiled harness)",
                         lambda s: run_harness(exe, [x["steps"] for x in s]), bundle, golden, samples))
    for simulator in ("verilator", "icarus"):
        reason = availability(simulator)
        if reason:
            rows.append({"path": f"{simulator} (cocotb)", "skipped": reason})
            continue
        build(verilog, simulator)

        def simulate(s, simulator=simulator):
            job = {"build_key": key, "programs": [{"config_writes": [], "samples": s}]}
            return run_job(verilog, job, simulator)["programs"][0]["samples"]
        rows.append(_measure(f"{simulator} (cocotb)", simulate, bundle, golden, samples[:args.cocotb_samples]))
    base = rows[0]["cycles_per_second"]
    for r in rows:
        if "cycles_per_second" in r:
            r["speed_vs_compiled_harness"] = round(r["cycles_per_second"] / base, 4)
    report = {"benchmark": "sim_speed", "model": args.model, "sizes": bundle.sizes,
              "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
              "command": "python -m bsnn.bench.sim_speed " + " ".join(argv or []), "results": rows}
    write_file(args.json, (json.dumps(report, indent=2) + "\n").encode(), replaces=previous_json)
    for r in rows:
        if "skipped" in r:
            print(f"{r['path']:32s} skipped: {r['skipped']}")
        else:
            print(f"{r['path']:32s} {r['cycles_per_second']:>12,} cycles/s  {r['samples_per_second']:>8} samples/s"
                  f"  x{r['speed_vs_compiled_harness']}  bit-exact {r['bit_exact']}")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
