"""A compiled-object cache for Verilator builds: ``OBJCACHE`` in Verilator's makefiles.

Every Verilator build compiles the same runtime (``verilated.cpp``, ``verilated_vpi.cpp``, cocotb's
``verilator.cpp`` main, ...): about 20 seconds of the 40 a small core takes to build, repeated for
each bundle a test or a regression compiles. Verilator's makefiles put ``$(OBJCACHE)`` in front of
every compiler call (meant for ccache, which PyPI does not ship); this module is that prefix.

The key of an object is the compiler (its resolved path, size and modification time), the command
line without its output names, and the preprocessed source (``-E -P``), so an object is reused only
when the compiler would see exactly the same text under the same options. A call that is not a
plain compilation (linking, a precompiled header), or whose source cannot be preprocessed on its
own, runs the compiler unchanged. Entries are written aside and renamed into place, so parallel
builds share the cache safely. ``BSNN_OBJCACHE=0`` turns it off.

Usage (what the makefiles run): ``python -m bsnn.sim.objcache CACHE_DIR CXX ARGS...``
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE_SUFFIXES = (".cpp", ".cc", ".cxx", ".c")


def _compile_parts(args: list[str]) -> tuple[str, str, list[str]] | None:
    """(source, object, args without ``-c``/``-o X``/``-MMD``) of a single-source compile,
    else None."""
    if "-c" not in args:
        return None
    sources = [a for a in args if a.endswith(SOURCE_SUFFIXES) and not a.startswith("-")]
    if len(sources) != 1:
        return None
    source = sources[0]
    output, rest, skip = None, [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "-o":
            output, skip = args[i + 1], True
        elif arg not in ("-c", "-MMD", source):
            rest.append(arg)
    if output is None:   # "-c file.cpp" writes file.o in the current directory
        output = Path(source).with_suffix(".o").name
    return source, output, rest


def _without_precompiled_headers(args: list[str]) -> list[str] | None:
    """``-include X`` where only ``X.gch`` exists names a precompiled ``X`` minus its last suffix
    (Verilator's ``Vtop__pch.h.fast``); preprocessing needs the header itself. None if it is
    missing."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "-include" and not Path(out[i + 1]).exists():
            header = Path(out[i + 1])
            if not Path(f"{header}.gch").exists() or not header.with_suffix("").exists():
                return None
            out[i + 1] = str(header.with_suffix(""))
    return out


def cache_key(compiler: str, source: str, options: list[str]) -> str | None:
    """The digest that names an object in the cache, or None when it cannot be worked out."""
    path = shutil.which(compiler)
    plain = _without_precompiled_headers(options)
    if path is None or plain is None:
        return None
    try:
        text = subprocess.run([compiler, *plain, "-E", "-P", source], capture_output=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    stat = Path(path).resolve().stat()
    digest = hashlib.sha256()
    for part in (str(Path(path).resolve()), str(stat.st_size), str(stat.st_mtime_ns), *options):
        digest.update(part.encode() + b"\0")
    digest.update(text)
    return digest.hexdigest()


def _put(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def run(cache_dir: Path, command: list[str]) -> int:
    """Run compiler ``command`` through the cache; returns its exit status."""
    parts = _compile_parts(command[1:]) if os.environ.get("BSNN_OBJCACHE", "1") != "0" else None
    key = cache_key(command[0], parts[0], parts[2]) if parts else None
    if key is None:
        return subprocess.run(command).returncode
    _, output, _ = parts
    depfile = Path(output).with_suffix(".d")
    entry = cache_dir / key[:2] / key
    if entry.with_suffix(".o").exists():
        _put(entry.with_suffix(".o"), Path(output))
        if "-MMD" in command and entry.with_suffix(".d").exists():
            _put(entry.with_suffix(".d"), depfile)
        return 0
    status = subprocess.run(command).returncode
    if status == 0:
        entry.parent.mkdir(parents=True, exist_ok=True)
        if "-MMD" in command and depfile.exists():
            _put(depfile, entry.with_suffix(".d"))
        _put(Path(output), entry.with_suffix(".o"))   # last: its presence marks a whole entry
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m bsnn.sim.objcache CACHE_DIR COMPILER [ARGS...]", file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
