"""Run definitions: the workflow each checkpointed run executes, as plain data
(``Graph.definition()``: tasks, types, dependencies, routes, schemas), kept beside its
journal in a table of its own (``run_definitions``) of the run's SQLite checkpoint file,
so that a reader (the run viewer) draws any stored run's graph. Records are sealed and
checked like every checkpoint record.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ray_orch.store.checkpoint import open_side_tables, seal, unseal

__all__ = ["RunDefinitions"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_definitions (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, payload TEXT NOT NULL,
    checksum TEXT NOT NULL, saved_at REAL NOT NULL);
"""


class RunDefinitions:
    """The definitions of one checkpoint directory's runs.

    Example:
        >>> import tempfile
        >>> store = RunDefinitions(tempfile.mkdtemp())
        >>> store.keep("r1", "demo", {"mode": "workflow", "tasks": {"b": {}, "a": {"deps": ["b"]}}})
        >>> list(store.get("r1")["tasks"])
        ['b', 'a']
        >>> store.get("r2") is None
        True
        >>> store.close()
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path, self.conn = open_side_tables(directory, _SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()

    def keep(self, run_id: str, workflow: str, definition: dict[str, Any]) -> None:
        """Keep the run's definition (a resumed run's replaces the earlier one)."""
        # Sealed JSON sorts keys: the tasks' order (the scheduler's) is kept beside them.
        text, checksum = seal({"definition": definition,
                               "order": list(definition.get("tasks") or {})})
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO run_definitions VALUES (?,?,?,?,?)",
                              (run_id, workflow, text, checksum, time.time()))

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run's definition, or None when none was kept."""
        with self.lock:
            row = self.conn.execute("SELECT payload, checksum FROM run_definitions WHERE "
                                    "run_id=?", (run_id,)).fetchone()
        if row is None:
            return None
        kept = unseal(row[0], row[1], "run definition", self.path, run_id=run_id)
        definition: dict[str, Any] = kept["definition"]
        tasks = definition.get("tasks") or {}
        definition["tasks"] = {name: tasks[name] for name in kept["order"] if name in tasks}
        return definition
