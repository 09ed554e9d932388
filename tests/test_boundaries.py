"""The package's boundaries: Qt stays in ``galaxy_inspector.gui``, ``training`` stays outside
``galaxy_inspector``, and no two modules of ``galaxy_inspector`` import each other."""

from __future__ import annotations

import ast
import graphlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import galaxy_inspector

PACKAGE_ROOT = Path(galaxy_inspector.__file__).parent
GUI_PACKAGE = "galaxy_inspector.gui"
#: Modules never imported outside the GUI: Qt, its bindings' runtime, the Qt plotting and
#: widget libraries, Matplotlib's Qt canvases, and the training package.
FORBIDDEN = (r"^(PySide6|shiboken6|PyQt5|PyQt6|qtpy|pyqtgraph|superqt|training)(\.|$)"
             r"|^matplotlib\.backends\.backend_qt")

# Imports each module in turn and prints, as JSON, the forbidden modules that module pulled in
# (so a leak is blamed on the first module whose import brought it).
_IMPORT_EACH = """
import importlib, json, re, sys
forbidden = re.compile(sys.argv[1])
leaks = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    found = sorted(m for m in sys.modules if forbidden.match(m))
    if found:
        leaks[name] = found
        break
print(json.dumps(leaks))
"""


def non_gui_modules() -> list[str]:
    """Every module of ``galaxy_inspector`` outside ``galaxy_inspector.gui``."""
    names = ["galaxy_inspector"]
    for info in pkgutil.walk_packages(galaxy_inspector.__path__, "galaxy_inspector."):
        if info.name != GUI_PACKAGE and not info.name.startswith(GUI_PACKAGE + "."):
            names.append(info.name)
    return names


@pytest.mark.slow
def test_every_non_gui_module_imports_without_qt_or_training():
    modules = non_gui_modules()
    assert "galaxy_inspector.viewer.state" in modules and "galaxy_inspector.cli" in modules
    out = subprocess.run([sys.executable, "-c", _IMPORT_EACH, FORBIDDEN, *modules],
                         capture_output=True, text=True, check=True, cwd=PACKAGE_ROOT.parent)
    assert json.loads(out.stdout) == {}, "a non-GUI module imported Qt or training"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Names of the modules (or packages) an AST imports anywhere, lazy imports included;
    ``from package import name`` counts as importing ``package.name`` (a name that is not a
    module is discarded later)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """``{module: the galaxy_inspector modules it imports}`` from the source (static, so
    function-level imports count too)."""
    sources = {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    graph = {}
    for module, path in sources.items():
        imported = _imported_names(ast.parse(path.read_text(), str(path)), module,
                                   path.name == "__init__.py")
        graph[module] = {name for name in imported if name in sources and name != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))
    return None


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_import_graph_sees_lazy_and_relative_imports():
    tree = ast.parse("from . import sibling\nfrom ..io import fits\n"
                     "def f():\n    import galaxy_inspector.engine\n")
    names = _imported_names(tree, "galaxy_inspector.viewer.tasks", is_package=False)
    assert {"galaxy_inspector.viewer.sibling", "galaxy_inspector.io.fits",
            "galaxy_inspector.engine"} <= names


def test_no_import_cycles_in_galaxy_inspector():
    graph = import_graph()
    assert "galaxy_inspector.gui.main_window" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
