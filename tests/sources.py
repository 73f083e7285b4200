"""The project's own modules, read from the source tree: shared by the structural tests
(layers, doctests, sizes, DESIGN.md) wherever they sit under ``tests/``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ray_orch", "actors")


def all_modules() -> dict[str, Path]:
    """Every module of ``ray_orch`` and ``actors`` by dotted name (a package by its
    ``__init__.py``), with its file."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found
