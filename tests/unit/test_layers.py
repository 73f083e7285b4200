"""The house's structure, read from the source: no import cycles among ``ray_orch`` and
``actors`` modules (imports inside functions count; those under ``TYPE_CHECKING`` do
not), and imports between the layers point down only (docs/DESIGN.md draws them)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from sources import all_modules

# Lowest first. A module may import its own layer and the layers below it, never above.
# ``actors`` sits between the engine and the driver API: actor classes wrap the engine,
# and the driver API starts actors.
LAYERS = ["core", "store", "model", "tools", "policy", "engine", "observe", "actors", "api",
          "front"]
PACKAGES = set(LAYERS) - {"actors", "front"}


def layer_of(module: str) -> str:
    """A module's layer: its subpackage of ``ray_orch``; ``actors``; or the front ends
    (the package's own modules: the public surface, cli, demo, testing)."""
    parts = module.split(".")
    if parts[0] == "actors":
        return "actors"
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return "front"


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every project module ``module`` imports at run time, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        # The deepest project module the name denotes (a name may be a module or a symbol).
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _under_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                add(f"{prefix}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in import_graph().items():
        if module == "ray_orch":  # the public surface re-exports from every layer
            continue
        mine = LAYERS.index(layer_of(module))
        for target in targets:
            if target == "ray_orch":
                continue
            if LAYERS.index(layer_of(target)) > mine:
                wrong.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    assert not wrong, "imports that point up:\n" + "\n".join(sorted(wrong))


def test_core_has_no_ray_and_no_network():
    for module, path in all_modules().items():
        if layer_of(module) != "core":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("ray", "aiohttp", "litellm", "httpx"), \
                    f"{module} imports {name}"


@pytest.mark.parametrize("cycle", [
    {"a": {"b"}, "b": {"a"}},
    {"a": {"b"}, "b": {"c"}, "c": {"a"}},
])
def test_the_cycle_finder_finds_cycles(cycle):
    assert cycles(cycle)


def test_function_level_imports_count(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.hidden\n"
                    "def f():\n    from x import inner\n")
    assert imports_of("x.m", path, {"x.hidden", "x.inner", "x.m"}) == {"x.inner"}
