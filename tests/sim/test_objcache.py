"""The compiled-object cache of Verilator builds (bsnn.sim.objcache): reuse only identical text."""
import shutil
import subprocess

import pytest

from bsnn.sim import objcache

CXX = shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler on PATH")


def _objects(cache):
    return sorted(p.name for p in cache.rglob("*.o"))


def _project(directory, value):
    directory.mkdir()
    (directory / "value.h").write_text(f"#define VALUE {value}\n")
    (directory / "main.cpp").write_text('#include "value.h"\nint main() { return VALUE; }\n')
    return directory


def _compile(cache, directory, monkeypatch):
    monkeypatch.chdir(directory)
    return objcache.run(cache, [CXX, "-I.", "-MMD", "-O1", "-c", "-o", "main.o", "main.cpp"])


def _link_and_run(directory):
    subprocess.run([CXX, "main.o", "-o", "prog"], cwd=directory, check=True)
    return subprocess.run([directory / "prog"]).returncode


def test_same_text_is_reused_and_a_changed_header_is_not(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _project(tmp_path / "first", 3)
    assert _compile(cache, first, monkeypatch) == 0
    stored = _objects(cache)
    assert len(stored) == 1 and (first / "main.d").exists()

    # Another folder, the same preprocessed text and options: the stored object, no new entry.
    second = _project(tmp_path / "second", 3)
    assert _compile(cache, second, monkeypatch) == 0
    assert _objects(cache) == stored
    assert (second / "main.o").read_bytes() == (first / "main.o").read_bytes()
    assert (second / "main.d").exists() and _link_and_run(second) == 3

    # Only an included header differs: the key must change, and the object must be the new one.
    third = _project(tmp_path / "third", 5)
    assert _compile(cache, third, monkeypatch) == 0
    assert len(_objects(cache)) == 2 and _link_and_run(third) == 5


def test_options_are_part_of_the_key(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    project = _project(tmp_path / "p", 1)
    _compile(cache, project, monkeypatch)
    assert objcache.run(cache, [CXX, "-I.", "-O2", "-c", "main.cpp"]) == 0   # no -o: main.o
    assert len(_objects(cache)) == 2


def test_non_compiling_calls_and_failures_pass_through(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    project = _project(tmp_path / "p", 4)
    _compile(cache, project, monkeypatch)
    assert objcache.run(cache, [CXX, "main.o", "-o", "prog"]) == 0          # a link: not cached
    assert subprocess.run([project / "prog"]).returncode == 4
    (project / "bad.cpp").write_text("int main( {\n")
    assert objcache.run(cache, [CXX, "-c", "bad.cpp"]) != 0
    assert len(_objects(cache)) == 1


def test_precompiled_header_is_preprocessed_from_its_header(tmp_path, monkeypatch):
    """Verilator compiles ``-include Vtop__pch.h.fast`` against ``Vtop__pch.h.fast.gch``."""
    project = _project(tmp_path / "p", 6)
    monkeypatch.chdir(project)
    (project / "pch.h").write_text("#define FROM_PCH 1\n")
    subprocess.run([CXX, "-x", "c++-header", "pch.h", "-o", "pch.h.fast.gch"], check=True)
    options = ["-include", "pch.h.fast", "-I."]
    assert objcache.cache_key(CXX, "main.cpp", options) is not None
    (project / "pch.h").unlink()
    assert objcache.cache_key(CXX, "main.cpp", options) is None   # cannot tell: compile uncached


def test_turned_off_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BSNN_OBJCACHE", "0")
    cache = tmp_path / "cache"
    assert _compile(cache, _project(tmp_path / "p", 2), monkeypatch) == 0
    assert not cache.exists()
