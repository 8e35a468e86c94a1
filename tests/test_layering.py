"""The package's import direction (README, "Layout"): every import inside ``bsnn`` runs downward.

Each sub-package may import only itself and the sub-packages listed for it here; the root modules
of ``bsnn`` (the command line and the flows it runs) sit on top and may import anything. The
check reads every module's source (``import`` statements anywhere, including inside functions),
so an upward import fails here even if it is only executed on some code path.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import bsnn

# Sub-package -> the sub-packages it may import (besides itself). Written once, here and in the
# README's layout table (test_readme_layout_matches).
ALLOWED = {
    "bsnn.firmware_export": set(),
    "bsnn.training": {"bsnn.firmware_export"},
    "bsnn.hdl": {"bsnn.firmware_export"},
    "bsnn.nir_interop": {"bsnn.firmware_export"},
    "bsnn.sim": {"bsnn.hdl", "bsnn.firmware_export"},
    "bsnn.bench": {"bsnn.sim", "bsnn.hdl", "bsnn.training", "bsnn.firmware_export"},
}
# The stage folders' old top-level names: importing one of them means importing the source tree.
FOLDER_NAMES = {"training", "firmware_export", "hdl", "sim", "nir_interop", "bench", "tests"}


def _modules():
    """(name, source path, is a package) of every module of the installed package.

    The sub-packages are walked one by one: in an editable install they live in other folders than
    the root package, so walking ``bsnn.__path__`` alone would not reach them.
    """
    yield "bsnn", Path(bsnn.__file__), True
    for name in ["bsnn", *ALLOWED]:
        package = importlib.import_module(name)
        if name != "bsnn":
            yield name, Path(package.__file__), True
        for info in pkgutil.iter_modules(package.__path__, name + "."):
            if info.name in ALLOWED:
                continue
            spec = importlib.util.find_spec(info.name)
            yield info.name, Path(spec.origin), info.ispkg
            if info.ispkg:
                for sub in pkgutil.walk_packages(importlib.import_module(info.name).__path__,
                                                 info.name + "."):
                    yield sub.name, Path(importlib.util.find_spec(sub.name).origin), sub.ispkg


def _owner(module: str) -> str:
    """The sub-package a module belongs to (``bsnn`` for the root modules)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in ALLOWED else "bsnn"


def _imports(module: str, path: Path, is_pkg: bool):
    tree = ast.parse(path.read_text(), str(path))
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield node.lineno, target
            if not node.module:   # from . import x, y: the names are modules too
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"


def _violations():
    found = []
    for module, path, is_pkg in _modules():
        owner = _owner(module)
        for line, target in _imports(module, path, is_pkg):
            top = target.split(".")[0]
            where = f"{path.name}:{line} ({module})"
            if top in FOLDER_NAMES:
                found.append(f"{where} imports the source folder {target!r}; use bsnn.{target}")
                continue
            if top != "bsnn" or owner == "bsnn":
                continue
            dest = _owner(target)
            if dest == owner:
                continue
            if dest == "bsnn" and target != "bsnn":
                found.append(f"{where} imports {target}, a root module above every sub-package")
            elif dest not in ALLOWED[owner] and target != "bsnn":
                found.append(f"{where} imports {target}: {owner} may import only "
                             f"{sorted(ALLOWED[owner]) or 'nothing else'}")
    return found


def test_imports_run_downward():
    assert _violations() == []


def test_no_sys_path_edits():
    offenders = []
    for module, path, _ in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "path" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_every_module_imports():
    for module, _, _ in _modules():
        if not module.endswith("__main__"):   # runs the command line
            importlib.import_module(module)


def test_readme_layout_matches():
    """The README's layout table lists every sub-package with the same allowed imports."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].startswith("bsnn."):
            imports = {c.strip().strip("`") for c in cells[2].split(",") if c.strip() not in ("", "-")}
            rows[cells[1]] = {c for c in imports if c.startswith("bsnn.")}
    assert rows == ALLOWED


@pytest.mark.parametrize("bad, message", [
    ("from bsnn.sim import runner\n", "bsnn.hdl may import only"),
    ("import hdl.core\n", "source folder"),
    ("from bsnn.evaluate import evaluate\n", "root module"),
])
def test_checker_catches(tmp_path, monkeypatch, bad, message):
    """The checker itself: an upward import planted in a copy of a hdl module is reported."""
    planted = tmp_path / "planted.py"
    planted.write_text(bad)
    real = list(_modules())
    monkeypatch.setattr(sys.modules[__name__], "_modules",
                        lambda: iter(real + [("bsnn.hdl.planted", planted, False)]))
    assert any(message in v for v in _violations())


def _module_graph():
    """module -> the package modules it imports (a ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module)."""
    modules = {name: (path, is_pkg) for name, path, is_pkg in _modules()}
    graph = {}
    for name, (path, is_pkg) in modules.items():
        targets = set()
        for _, target in _imports(name, path, is_pkg):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not modules[target][1]:   # packages: their __init__
                targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict) -> list[str]:
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles_between_modules():
    """Besides the direction between sub-packages, modules never import each other in a circle
    (e.g. training's export is a step that training calls, so export must not import train)."""
    assert _cycles(_module_graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = _module_graph()
    graph["bsnn.training.export"] = graph["bsnn.training.export"] | {"bsnn.training.train"}
    assert any("bsnn.training.export -> bsnn.training.train" in c or
               "bsnn.training.train -> bsnn.training.export" in c for c in _cycles(graph))
