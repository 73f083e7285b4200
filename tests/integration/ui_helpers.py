"""Shared parts of the run viewer's browser tests: a workflow that pauses for approval,
the viewer served over its run store (a directory or a PostgreSQL DSN), and Debian's Chromium through
Playwright (the tests skip where either is missing).

Import it as ``integration.ui_helpers``: Ray workers (whose path holds ``tests/``) load
the ``Post`` schema by that name."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from ray_orch import Agent, Process, RunPaused, Task

CHROMIUM = os.environ.get("RAY_ORCH_CHROMIUM", "/usr/bin/chromium")
HTML = '<img src=x onerror="document.title=\'owned\'"><b id="injected">bold</b>'
"""A model answer holding markup: the viewer must show it as text."""


class Post(BaseModel):
    """A structured draft (edits of it are checked against this schema)."""

    title: str
    words: int


def writers(stub: Any, store: str, *, structured: bool = False) -> Process:
    """research -> draft (asks a person) -> publish, checkpointed in ``store`` (a
    directory or a DSN)."""
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    draft_options: dict[str, Any] = {"output_pydantic": Post} if structured else {}
    tasks = {
        "research": Task(description="Research the topic", agent=writer),
        "draft": Task(description="Draft the post", agent=writer, context=["research"],
                      human_input=True, **draft_options),
        "publish": Task(description="Publish the post", agent=writer, context=["draft"]),
    }
    return Process(tasks=tasks, agents=[writer], store=store, name="blog")


def pause(stub: Any, store: str, **options: Any) -> tuple[str, str]:
    """Run ``writers`` until it pauses: ``(run id, request id)``."""
    with pytest.raises(RunPaused) as paused:
        writers(stub, store, **options).workflow()
    [request] = paused.value.requests
    return paused.value.run_id, request.id


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium page factory (Debian's binary; Playwright's download is not
    needed)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def viewer(store: str) -> Iterator[Any]:
    """The viewer over ``store`` (a directory or a DSN), served from this process (its
    runs join this test session's Ray)."""
    from ray_orch.ui.server import UIServer
    from ray_orch.ui.store_source import StoreSource

    with UIServer(StoreSource([store])) as server:
        yield server
