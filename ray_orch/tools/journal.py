"""The journal of tool calls: side effects happen once.

Every completed call of a replayable tool is recorded under (run, task, visit, tool,
arguments, n) where n counts identical calls within an attempt. A retried attempt, or
the same task in a resumed run, finds the record of an identical call and reuses its
result instead of running the tool again.

Records live in memory for one task run, and, when the run checkpoints, in a table of
their own (``tool_calls``) in the run's SQLite checkpoint file, written by the agent
actor that made the call (sealed and checked like every checkpoint record).

"Visit" is the visit's identity as the actor sees it: a digest of the task's inputs,
upstream outputs and loop iteration. A resumed run restores the same upstream outputs,
so its visits match the interrupted run's; a cycle's later visit sees new upstream
outputs, so it runs its tools again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from ray_orch.store.checkpoint import (
    canonical_json,
    open_side_tables,
    seal,
    sha256_hex,
    unseal,
)

__all__ = ["ToolJournal", "ToolJournalRef", "visit_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_calls (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, visit TEXT NOT NULL, tool TEXT NOT NULL,
    args_key TEXT NOT NULL, nth INTEGER NOT NULL, payload TEXT NOT NULL,
    checksum TEXT NOT NULL, saved_at REAL NOT NULL,
    PRIMARY KEY (run_id, task_id, visit, tool, args_key, nth));
"""


@dataclass(frozen=True, kw_only=True)
class ToolJournalRef:
    """Where a run's tool calls are journaled (set on its tasks by the run engine)."""

    directory: str
    """The run's checkpoint directory."""
    run_id: str
    """The run's id (kept on resume)."""


def visit_digest(inputs: Any, context: dict[str, Any], iteration: int | None) -> str:
    """The identity of one visit of a task, from what it was given."""
    upstream = {name: getattr(out, "raw", str(out)) for name, out in sorted(context.items())}
    return sha256_hex(canonical_json({"inputs": inputs, "context": upstream,
                                      "iteration": iteration}))[:20]


class _Store:
    """The ``tool_calls`` table of one checkpoint file (one connection per process)."""

    _opened: dict[str, _Store] = {}
    _guard = threading.Lock()

    def __init__(self, directory: str) -> None:
        # 0700 / 0600: tool results hold what the run saw.
        self.path, self.conn = open_side_tables(directory, _SCHEMA)
        self.lock = threading.Lock()

    @classmethod
    def of(cls, directory: str) -> _Store:
        with cls._guard:
            store = cls._opened.get(directory)
            if store is None:
                store = cls._opened[directory] = cls(directory)
            return store

    def get(self, key: tuple[str, str, str, str, str, int]) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT payload, checksum FROM tool_calls WHERE run_id=? AND task_id=? AND "
                "visit=? AND tool=? AND args_key=? AND nth=?", key).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], "tool call", self.path, run_id=key[0],  # type: ignore[no-any-return]
                      task_id=key[1])

    def put(self, key: tuple[str, str, str, str, str, int], record: dict[str, Any]) -> None:
        text, checksum = seal(record)
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO tool_calls VALUES (?,?,?,?,?,?,?,?,?)",
                              (*key, text, checksum, time.time()))

    def all(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT task_id, payload, checksum FROM tool_calls WHERE run_id=? "
                "ORDER BY saved_at", (run_id,)).fetchall()
        return [unseal(p, c, "tool call", self.path, run_id=run_id, task_id=t)
                for t, p, c in rows]


class ToolJournal:
    """The tool calls of one task run: remembered across its attempts, and durably
    when ``ref`` is given.

    Args:
        task: the task's name.
        visit: ``visit_digest`` of this visit.
        ref: the run's journal location, or None (memory only).
    """

    def __init__(self, *, task: str, visit: str, ref: ToolJournalRef | None = None) -> None:
        self.task = task
        self.visit = visit
        self.ref = ref
        self.memory: dict[tuple[str, str, int], dict[str, Any]] = {}

    def _key(self, tool: str, args_key: str, nth: int) -> tuple[str, str, str, str, str, int]:
        assert self.ref is not None
        return (self.ref.run_id, self.task, self.visit, tool, args_key, nth)

    async def lookup(self, tool: str, arguments: dict[str, Any],
                     nth: int) -> dict[str, Any] | None:
        """The record of an identical earlier call (the ``nth`` such in its attempt)."""
        args_key = args_digest(arguments)
        found = self.memory.get((tool, args_key, nth))
        if found is None and self.ref is not None:
            store = _Store.of(self.ref.directory)
            found = await asyncio.to_thread(store.get, self._key(tool, args_key, nth))
        return found

    async def record(self, tool: str, arguments: dict[str, Any], nth: int,
                     record: dict[str, Any]) -> None:
        """Remember a completed call (durably, before its result goes to the model)."""
        args_key = args_digest(arguments)
        self.memory[(tool, args_key, nth)] = record
        if self.ref is not None:
            store = _Store.of(self.ref.directory)
            entry = {"task": self.task, "visit": self.visit, **record}
            await asyncio.to_thread(store.put, self._key(tool, args_key, nth), entry)


def args_digest(arguments: dict[str, Any]) -> str:
    """A short, order-independent key of a call's arguments."""
    return sha256_hex(canonical_json(arguments))[:24]


def journaled_calls(directory: str, run_id: str) -> list[dict[str, Any]]:
    """Every journaled tool call of a run, oldest first (for tools and operators).

    Example:
        >>> import tempfile
        >>> journaled_calls(tempfile.mkdtemp(), "no-such-run")
        []
    """
    return _Store.of(directory).all(run_id)
