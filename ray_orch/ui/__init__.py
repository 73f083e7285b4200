"""The run viewer: runs and their graphs, live, in a browser, with approvals
(``ray-orch ui``). ``source`` is what it reads (``RunSource``), ``store_source`` its
implementation over run stores (SQLite directories, PostgreSQL), ``live`` the runs it
drives, ``server`` the aiohttp server and ``static/`` the pages (HTML, CSS and JS)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_orch.ui.store_source import StoreSource

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


def source_for(directory: str | None = None, store: str | None = None) -> StoreSource:
    """The ``RunSource`` of a checkpoint directory, a run store or the defaults.

    Args:
        directory: a checkpoint directory (``Process(checkpoint_dir=...)``).
        store: a run store: a directory, ``sqlite:///path/to/dir`` (or its
            ``ray_orch.sqlite``) or a ``postgresql://`` DSN (connected to now).

    Raises:
        ValueError: both given.
        StoreError: a DSN that cannot be parsed or reached, or an unknown scheme.
    """
    from ray_orch.store.factory import is_postgres, open_store
    from ray_orch.ui.store_source import StoreSource

    if directory and store:
        raise ValueError("give --dir or --store, not both")
    if store:
        spec = store.strip()
        if is_postgres(spec):
            open_store(spec, check=True).close()  # a bad DSN is named before serving
            return StoreSource([spec])
        if "://" in spec and not spec.lower().startswith("sqlite://"):
            open_store(spec)  # raises the store's own error naming the scheme
        path = spec.removeprefix("sqlite://")
        if path.endswith(".sqlite"):  # the store's file itself
            path = os.path.dirname(path)
        return StoreSource([path])
    return StoreSource([directory] if directory else default_directories())
