"""``bsnn eval --engine rtl``: a dataset through the generated Verilog, checked sample by sample."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bsnn.firmware_export.events import events_from_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.sim.check import compare_sample
from bsnn.sim.runner import run_job
from bsnn.firmware_export.paths import build_root

# Samples per simulator launch (one progress-bar step): the compiled Verilator harness starts in
# milliseconds, a cocotb run in about a second.
CHUNK = {"verilator": 250, "icarus": 50}


def generated_design(bundle, hw=None) -> tuple[Path, dict]:
    """Generate (or reuse) the Verilog of ``bundle``; returns (verilog path, hardware manifest)."""
    import hashlib
    import json

    from bsnn.hdl.config import HardwareConfig
    from bsnn.hdl.generate import generate
    from bsnn.firmware_export.bundle import bundle_digest

    hw = hw or HardwareConfig()
    # The generator's own sources are part of the key: a changed core is never served stale.
    import bsnn.hdl
    sources = b"".join(p.read_bytes() for p in sorted(Path(bsnn.hdl.__file__).parent.glob("*.py")))
    digest = hashlib.sha256((bundle_digest(bundle) + json.dumps(hw.to_dict(), sort_keys=True)
                             ).encode() + sources).hexdigest()[:16]
    out = build_root() / "rtl" / digest
    if not (out / "hardware.json").exists():
        generate(bundle, hw, out)
    manifest = json.loads((out / "hardware.json").read_text())
    return out / "bsnn_core.v", manifest


def rtl_evaluate(bundle, on, off, simulator: str = "verilator", progress: bool = True, hw=None,
                 trace: bool = True) -> dict:
    """Run every sample through the RTL and compare it with the golden model.

    Verilator runs the compiled C++ harness (sim/harness.py); Icarus runs the cocotb testbench.
    ``trace = False`` clears the run-time GLOBAL trace bit first (no SPIKE records: the core's
    own rate when a host only wants the result).
    """
    from bsnn.hdl.layouts import ConfigTarget, GlobalAddress

    if off is None:
        off = torch.zeros_like(on)
    verilog, manifest = generated_design(bundle, hw)
    key = manifest["build_key"]
    # The memories start with the bundle's contents (init=), so only the trace bit is written.
    writes = [] if trace else [(int(ConfigTarget.GLOBAL), GlobalAddress.TRACE, 0)]
    if simulator == "verilator":
        from bsnn.hdl.config import CoreGeometry
        from bsnn.sim.harness import compile_harness, run_harness
        exe = compile_harness(verilog, CoreGeometry.from_key(key))

        def simulate(samples):
            return run_harness(exe, [s["steps"] for s in samples], config_writes=writes)
    else:
        def simulate(samples):
            job = {"build_key": key, "programs": [{"config_writes": [list(w) for w in writes],
                                                   "samples": samples}],
                   "max_cycles": 50_000_000}
            return run_job(verilog, job, simulator)["programs"][0]["samples"]
    from bsnn.hdl.config import CoreGeometry
    from bsnn.hdl.generate import cycles_bound, unit_counts
    geom = CoreGeometry.from_key(key)
    chunk = CHUNK.get(simulator, 50)
    n = on.shape[1]
    predictions, cycles, bounds, mismatches = [], [], [], []
    t0 = time.perf_counter()
    with tqdm(total=n, desc=f"rtl ({simulator})", unit="sample", disable=not progress, leave=False) as bar:
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            golden = run_golden(bundle, on[:, sl], off[:, sl])
            samples = [{"steps": [[list(e) for e in step] for step in events_from_counts(on[:, sl], off[:, sl], b)]}
                       for b in range(sl.stop - sl.start)]
            for b, rtl in enumerate(simulate(samples)):
                problem = compare_sample(bundle, golden, b, rtl, trace=trace and key.get("trace", True))
                if problem:
                    mismatches.append(f"sample {start + b}: {problem}")
                records = rtl["records"]
                predictions.append(records[-1][3] if records else -1)
                cycles.append(rtl["cycles"] if rtl["cycles"] is not None else 0)
                # (per source unit for a convolutional build: the conv2d term of the bound
                # counts each event's taps, docs/semantics.md 10.7)
                counts = (unit_counts(bundle, on[:, sl], off[:, sl], golden.spikes, b)
                          if geom.is_spatial else None)
                bounds.append(cycles_bound(geom, bundle.time_steps,
                                           golden.events_per_layer[:, b].tolist(), counts))
            bar.update(sl.stop - sl.start)
    return {"predictions": predictions, "cycles": np.asarray(cycles),
            "cycles_bound": np.asarray(bounds), "mismatches": mismatches,
            "bit_exact": not mismatches, "seconds": round(time.perf_counter() - t0, 3)}
