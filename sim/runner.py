"""Build the generated Verilog once per simulator and run jobs of many bundles and samples on it.

A *job* is JSON: programs, each a list of config-port writes (a bundle loaded into the core) and
samples (input events per step); plus stall settings. The cocotb module ``bsnn.sim.cocotb_core``
drives it through the core's streams and writes every result record back as JSON. Comparing
against the golden model happens here, in ordinary Python (``bsnn.sim.check``).
"""
from __future__ import annotations

import fcntl
import re
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from bsnn.firmware_export.paths import build_root

from .toolchain import prepare_environment

TOPLEVEL = "bsnn_core"


class SimulationError(RuntimeError):
    pass


def build_dir_for(verilog: Path, simulator: str) -> Path:
    # (this file is part of the key: it patches the Verilog for Icarus before compiling)
    digest = hashlib.sha256(Path(verilog).read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]
    return (build_root() / "sim" / f"{simulator}-{digest}").resolve()


def _runner(simulator: str):
    prepare_environment(simulator)
    from cocotb_tools.runner import get_runner
    return get_runner(simulator)


def build(verilog: Path, simulator: str, waves: bool = False) -> Path:
    """Compile ``verilog`` (top ``bsnn_core``) for ``simulator``; cached by the source's hash."""
    verilog = Path(verilog).resolve()
    bdir = build_dir_for(verilog, simulator)
    if waves:
        bdir = bdir.with_name(bdir.name + "-waves")
    stamp = bdir / ".built"
    if stamp.exists():
        return bdir
    bdir.mkdir(parents=True, exist_ok=True)
    with open(bdir.parent / f".{bdir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # parallel test workers share one build
        if not stamp.exists():
            _compile(verilog, simulator, waves, bdir)
            stamp.write_text(str(verilog) + "\n")
    return bdir


_TIME0_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*dump_module\$\d+)\s*= 0;$", re.M)


_BARE_COMB = re.compile(r"^(\s*)always @\*\n\s+(?!begin\b)([^\n]*=[^\n]*;)\n", re.M)


def icarus_time_zero_fix(text: str) -> str:
    """Make Yosys' combinational blocks evaluate at time zero in Icarus Verilog.

    Yosys puts a dummy ``reg ...dump_module$N = 0;`` into every ``always @*`` block so that
    simulators run it once at time zero; Icarus 11 does not count a declaration initialiser as an
    event, so blocks whose inputs never change (a constant layer base, say) keep X forever. One
    ``#0`` toggle of that register is the event they wait for; the design is unchanged.
    """
    text = _TIME0_TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #0 {m.group(2)} = 1'b1;", text)
    # Yosys also writes one-statement blocks without that register (``always @* res[3:0] =
    # p1_cmd[3:0];``): they too run first when an input changes, which a register that keeps
    # its initial value never does (the neuron's result fields stayed X while valid). Each gets
    # one evaluation at time zero as well.
    return _BARE_COMB.sub(lambda m: f"{m.group(0)}{m.group(1)}initial #0 {m.group(2)}\n", text)


def _compile(verilog: Path, simulator: str, waves: bool, bdir: Path) -> None:
    runner = _runner(simulator)
    if simulator == "icarus":
        patched = bdir / "bsnn_core_icarus.v"
        patched.write_text(icarus_time_zero_fix(Path(verilog).read_text()))
        verilog = patched
    args = []
    if simulator == "verilator":
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "unique", "--x-initial", "unique",
                "-O2"]
    runner.build(sources=[verilog], hdl_toplevel=TOPLEVEL, build_dir=bdir, build_args=args,
                 timescale=("1ns", "1ps"), always=False, waves=waves, log_file=bdir / "build.log")


def run_job(verilog: Path, job: dict, simulator: str, waves: bool = False) -> dict:
    """Run ``job`` on the compiled design; returns the cocotb module's result JSON."""
    bdir = build(verilog, simulator, waves)
    runner = _runner(simulator)
    with tempfile.TemporaryDirectory(prefix="bsnn-job-", dir=bdir) as tmp:
        job_path = Path(tmp) / "job.json"
        result_path = Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        env = {"BSNN_JOB": str(job_path), "BSNN_RESULT": str(result_path)}
        log_path = Path(tmp) / "sim.log"
        t0 = time.perf_counter()
        try:
            runner.test(hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog", test_module="bsnn.sim.cocotb_core",
                        build_dir=bdir, test_dir=Path(tmp), extra_env=env, waves=waves,
                        results_xml=str(Path(tmp) / "results.xml"), log_file=log_path)
        except SystemExit:   # cocotb's runner exits when a test fails
            pass
        seconds = time.perf_counter() - t0
        if not result_path.exists():
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            raise SimulationError(f"{simulator}: the cocotb run produced no results\n{log[-4000:]}")
        if waves:
            for wave in Path(tmp).glob("*.[vf][cs][dt]"):
                target = build_root() / "waves" / wave.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(wave, target)
        result = json.loads(result_path.read_text())
    result["seconds"] = seconds
    return result
