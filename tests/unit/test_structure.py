"""The house's proportions, read from the source with ``ast``: no module of ``ray_orch``
or ``actors`` over 600 lines, no function over 80, and no private name (``_x``) imported
from another module (a name two modules share is public: it gets a docstring and a
place in ``__all__``)."""

from __future__ import annotations

import ast
import functools

from sources import ROOT, all_modules

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Functions over the limit that are owed a split (module.qualname: lines today). Each is
# in a module whose run loop or actor boundary is being reworked (issue 25, items 1-3);
# an entry whose function has shrunk must be removed (see the last test).
OWED_FUNCTIONS: dict[str, int] = {
    "ray_orch.api.process.Process._execute": 96,  # the run driver apart from Process (item 2)
    "ray_orch.policy.task.Task.__init__": 98,  # Task as a definition (item 1)
}

# Private names still imported across modules, owed the same way.
OWED_PRIVATE: set[tuple[str, str]] = {
    ("ray_orch.policy.task", "_bridge"),  # engine/overrides.py's bridge into Task.execute
}


def _functions(tree: ast.Module) -> list[tuple[str, int]]:
    """Every function and method, by qualified name, with its length in lines (from its
    ``def`` or first decorator to its last line)."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                name = f"{prefix}{child.name}"
                found.append((name, (child.end_lineno or child.lineno) - start + 1))
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


@functools.cache
def _parsed() -> dict[str, tuple[str, ast.Module]]:
    return {name: (path.read_text(), ast.parse(path.read_text(), filename=str(path)))
            for name, path in all_modules().items()}


def test_no_module_is_over_600_lines():
    long = {name: text.count("\n") for name, (text, _) in _parsed().items()
            if text.count("\n") > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines():
    long = {f"{module}.{name}": lines for module, (_, tree) in _parsed().items()
            for name, lines in _functions(tree) if lines > MAX_FUNCTION_LINES}
    unexpected = {k: v for k, v in long.items() if k not in OWED_FUNCTIONS}
    assert not unexpected, f"functions over {MAX_FUNCTION_LINES} lines: {unexpected}"
    paid = sorted(set(OWED_FUNCTIONS) - set(long))
    assert not paid, f"no longer over the limit, remove from OWED_FUNCTIONS: {paid}"


def test_no_private_name_is_imported_from_another_module():
    found = set()
    for module, (_, tree) in _parsed().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] in ("ray_orch", "actors")
                    and node.module != module):
                found |= {(node.module, alias.name) for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")}
    assert found <= OWED_PRIVATE, f"private names imported across modules: {found - OWED_PRIVATE}"
    assert not OWED_PRIVATE - found, f"paid, remove from OWED_PRIVATE: {OWED_PRIVATE - found}"


def test_the_counter_counts():
    tree = ast.parse("def f():\n    x = 1\n\n    return x\n\nclass C:\n    @staticmethod\n"
                     "    def g():\n        pass\n")
    assert _functions(tree) == [("f", 4), ("C.g", 3)]
    assert (ROOT / "ray_orch").is_dir()
