"""The layers of the code, read from its imports (with ``ast``: nothing is imported).

``workbench`` is the domain: Slurm, allocations, resources, scaling, the catalogue. The hub's
side (``spawners``) and the services and widgets (``extensions``) are built on it, so no
module under ``workbench/`` imports them, except the hub's composition: the hub's
configuration (``workbench/hubconfig.py``) and the ``workbench`` command (``workbench/cli``).
Inside ``workbench`` no two modules import each other, directly or around a circle.

An import inside a function body counts as much as one at the top of a module: it only runs
later, and hides the same arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workbench"

#: the hub's composition: the modules (and packages) of workbench that may import the layers
#: built on it
COMPOSITION = ("workbench.hubconfig", "workbench.cli")
UPPER_LAYERS = ("spawners", "extensions")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, Path]:
    """Every module of ``package`` by dotted name."""
    return {module_name(p, root): p for p in sorted(package.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file, at any depth, relative ones
    resolved. ``from a import b`` names ``a.b`` when that is a module of ``known``, else ``a``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
    return found


def graph(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module of ``mods``: first line}, self-imports left out. Importing
    ``a.b.c`` runs the packages ``a`` and ``a.b`` first: they count too, unless the importer
    is inside them (a package's own modules are imported while it is being set up)."""
    known = set(mods)
    edges: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        out: dict[str, int] = {}
        for target, line in imports(path, name, known):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                run = ".".join(parts[:i])
                inside = name == run or name.startswith(run + ".")
                if run in known and not inside:
                    out.setdefault(run, line)
        edges[name] = out
    return edges


def upward_imports(mods: dict[str, Path], root: Path = ROOT) -> list[str]:
    """``file:line imports X`` for each import of spawners/extensions outside COMPOSITION."""
    known = set(mods)
    bad = []
    for name, path in mods.items():
        if any(name == c or name.startswith(c + ".") for c in COMPOSITION):
            continue
        for target, line in imports(path, name, known):
            if target.split(".")[0] in UPPER_LAYERS:
                bad.append(f"{path.relative_to(root)}:{line} imports {target}")
    return bad


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def describe(component: list[str], edges: dict[str, dict[str, int]]) -> str:
    members = set(component)
    arrows = [f"{a} -> {b} (line {line})" for a in component
              for b, line in sorted(edges[a].items()) if b in members]
    return "; ".join(arrows)


# -- the checks on the tree ------------------------------------------------------------------


def test_workbench_does_not_import_spawners_or_extensions():
    bad = upward_imports(modules())
    assert not bad, ("workbench is the domain layer; only its hub composition "
                     f"({', '.join(COMPOSITION)}) imports spawners/extensions:\n"
                     + "\n".join(bad))


def test_no_import_circle_in_workbench():
    edges = graph(modules())
    found = circles(edges)
    assert not found, "import circles:\n" + "\n".join(describe(c, edges) for c in found)


# -- the checks can fail ---------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return modules(tmp_path / "workbench", tmp_path)


def test_a_function_level_circle_and_an_upward_import_are_found(tmp_path):
    mods = _tree(tmp_path, {
        "workbench/__init__.py": "",
        "workbench/hubconfig.py": "from spawners import api\n",
        "workbench/cli/__init__.py": "import extensions.help\n",
        "workbench/pkg/__init__.py": "",
        "workbench/pkg/model.py": "def load():\n    from .loader import load\n",
        "workbench/pkg/loader.py": "from . import model\n",
        "workbench/pkg/a.py": "from workbench.pkg.b import x\n",
        "workbench/pkg/b.py": "class B:\n    def f(self):\n        from .c import y\n",
        "workbench/pkg/c.py": "import workbench.pkg.a\n",
        "workbench/pkg/d.py": "from .model import load\n",
        "workbench/session.py": "def view():\n    from spawners.options import Mixin\n",
        "workbench/other/__init__.py": "from .x import X\n",
        "workbench/other/x.py": "import workbench.pkg.d\n",
        "workbench/pkg/e.py": "from workbench.other.x import X\n",
        "workbench/pkg/f.py": "from workbench.other import y\n",
    })
    found = sorted(circles(graph(mods)))
    assert found == [["workbench.pkg.a", "workbench.pkg.b", "workbench.pkg.c"],
                     ["workbench.pkg.loader", "workbench.pkg.model"]]
    edges = graph(mods)
    # importing workbench.other.x runs workbench/other/__init__.py; a module of a package
    # does not depend on its own package's __init__
    assert set(edges["workbench.pkg.e"]) == {"workbench.other", "workbench.other.x"}
    assert set(edges["workbench.pkg.f"]) == {"workbench.other"}
    assert "workbench.pkg" not in edges["workbench.pkg.d"]
    assert edges["workbench.other.x"] == {"workbench.pkg": 1, "workbench.pkg.d": 1}
    bad = upward_imports(mods, tmp_path)
    assert len(bad) == 1 and bad[0].endswith("session.py:2 imports spawners.options"), bad
