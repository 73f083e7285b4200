"""docs/DESIGN.md names every module of ``ray_orch`` and ``actors`` by its path, each on a
line with its job, and names no module that is gone."""

from __future__ import annotations

import re

from sources import ROOT, all_modules

DESIGN = ROOT / "docs" / "DESIGN.md"


def _rows() -> dict[str, str]:
    """The module table rows: ``{path: job}``."""
    rows = {}
    for line in DESIGN.read_text().splitlines():
        found = re.match(r"\|\s*`((?:ray_orch|actors)/[\w/]+\.py)`\s*\|\s*(.*?)\s*\|\s*$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def test_every_module_is_named_with_its_job():
    rows = _rows()
    paths = {str(path.relative_to(ROOT)) for path in all_modules().values()}
    missing = sorted(paths - set(rows))
    assert not missing, f"modules missing from docs/DESIGN.md (add a row each): {missing}"
    jobless = sorted(path for path in paths if len(rows[path].split()) < 2)
    assert not jobless, f"modules without a job in docs/DESIGN.md: {jobless}"


def test_no_module_named_is_gone():
    paths = {str(path.relative_to(ROOT)) for path in all_modules().values()}
    gone = sorted(set(_rows()) - paths)
    assert not gone, f"docs/DESIGN.md names modules that do not exist: {gone}"
