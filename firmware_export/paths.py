"""Where the flow reads its shipped data and writes its outputs: never inside the installed package.

Every default output and cache lives under ``build/`` of the current directory (or
``$BSNN_BUILD_DIR``); explicit paths given by the user are used as they are. Shipped data (board
configurations, the C header, lint waivers, the harness source) is read from the package itself,
so the same code works from a checkout and from an installed wheel.
"""
from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path


def build_root() -> Path:
    """The folder for default outputs and caches: ``$BSNN_BUILD_DIR`` or ``./build``."""
    return Path(os.environ.get("BSNN_BUILD_DIR") or "build")


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside ``package`` (e.g. ``package_file("bsnn.hdl", "lint_waivers.vlt")``)."""
    return Path(str(resources.files(package).joinpath(name)))


def source_commit() -> str | None:
    """The git commit the package's sources come from (None for an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
