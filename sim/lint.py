"""``make lint``: ``verilator --lint-only -Wall`` on generated Verilog, with the committed waivers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bsnn.firmware_export.paths import build_root, package_file
from bsnn.sim.toolchain import prepare_environment

WAIVERS = package_file("bsnn.hdl", "lint_waivers.vlt")


def lint(verilog: Path, top: str = "bsnn_core") -> tuple[int, str]:
    """Return (exit code, output) of a -Wall lint of ``verilog``."""
    prepare_environment("verilator")
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    if WAIVERS.exists():
        cmd.append(str(WAIVERS))
    cmd.append(str(verilog))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = Path(argv[0]) if argv else build_root() / "verilog"
    verilog = target / "bsnn_core.v" if target.is_dir() else target
    code, out = lint(verilog)
    print(out or f"verilator --lint-only -Wall: {verilog} is clean")
    return code


if __name__ == "__main__":
    sys.exit(main())
