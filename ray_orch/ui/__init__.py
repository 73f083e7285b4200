"""The run viewer: runs and their graphs, live, in a browser, with approvals
(``ray-orch ui``). ``source`` is what it reads (``RunSource``), ``checkpoint_source``
today's implementation over checkpoint directories, ``live`` the runs it drives,
``server`` the aiohttp server and ``static/`` the pages (plain HTML, CSS and JS)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_orch.ui.checkpoint_source import CheckpointSource

__all__ = ["default_directories", "source_for"]


def default_directories() -> list[str]:
    """Where runs are when no store is named: ``./checkpoints`` and the standing
    runtime's journal (``ray-orch up``), if one is set up."""
    from ray_orch.api.standing import read_runtime

    found = [os.path.abspath("checkpoints")]
    info = read_runtime()
    if info is not None and info.state_dir:
        found.append(info.journal_dir())
    return found


def source_for(directory: str | None = None, store: str | None = None
               ) -> CheckpointSource:
    """The ``RunSource`` of a checkpoint directory, a store DSN or the defaults.

    Args:
        directory: a checkpoint directory (``Process(checkpoint_dir=...)``).
        store: a DSN: ``sqlite:///path/to/dir`` (or its ``ray_orch.sqlite``, or a plain
            path) today.

    Raises:
        ValueError: a DSN of a store this build cannot read, or both given.
    """
    from ray_orch.ui.checkpoint_source import CheckpointSource

    if directory and store:
        raise ValueError("give --dir or --store, not both")
    if store:
        if store.startswith(("postgres://", "postgresql://")):
            raise ValueError(f"--store {store.split('://')[0]}://…: this build reads "
                             "SQLite checkpoint stores only (sqlite:///DIR or a directory)")
        path = store.removeprefix("sqlite://")
        if path.endswith(".sqlite"):  # the store's file itself
            path = os.path.dirname(path)
        return CheckpointSource([path])
    return CheckpointSource([directory] if directory else default_directories())
