"""Every docstring example in ``ray_orch`` and ``actors`` runs (doctest), against the
stub model and the session's Ray where an example needs them."""

from __future__ import annotations

import doctest
import importlib

import pytest
from sources import all_modules

MODULES = sorted(all_modules())


class _Checker(doctest.OutputChecker):
    """Ray's own log lines (its raylet and workers print to this process's stdout from a
    thread, at any moment) are not an example's output."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        mine = "".join(line for line in got.splitlines(keepends=True)
                       if "(raylet)" not in line and "(pid=" not in line)
        return super().check_output(want, mine, optionflags)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, ray_session, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(checker=_Checker(),
                                   optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_examples_are_found():
    import ray_orch.store.checkpoint as checkpoint

    found = doctest.DocTestFinder(exclude_empty=True).find(checkpoint)
    assert sum(len(t.examples) for t in found) >= 5
