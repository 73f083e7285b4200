"""The run store port: everything a run persists, behind one protocol.

A run's durable state is one :class:`RunStore`: its run records, completed tasks,
decisions, loop iterations (the checkpoint journal, :class:`CheckpointStore`), its
plain workflow definition (for the run viewer's graph), the result
cache's entries (:class:`CacheStore`), the tool calls it made, the approval requests it
asked and their answers, the paused runs' authenticated definitions and the reports of
detached runs. Memory tables join later (``store/memory_*.py``), in the same backends.

Backends, one module each, implement it over the same tables:

- :class:`~ray_orch.store.sqlite.SQLiteRunStore`: one file in a private directory (the
  default; ``checkpoint_dir=`` is its shorthand).
- :class:`~ray_orch.store.postgres.PostgresRunStore`: a PostgreSQL database through
  psycopg 3 and a connection pool (``store="postgresql://..."``).

:func:`~ray_orch.store.factory.open_store` turns a store spec (a directory, ``sqlite:///``
URL or ``postgresql://`` DSN) into one. Every store pickles as its spec, so it can be
handed to an actor; a PostgreSQL store reconnects there, and the runtime wraps an SQLite
store so that members on other nodes reach the file through a store service on its node.

Every payload is sealed (secrets scrubbed, canonical JSON, SHA-256) when written and
checked when read; a damaged record raises
:class:`~ray_orch.core.errors.CheckpointCorruptError`. A store that cannot be used (bad
DSN, unreachable, read-only, full) raises :class:`~ray_orch.core.errors.StoreError`
naming it without its password.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ray_orch.store.checkpoint import CacheStore, CheckpointStore

__all__ = ["RunStore", "ToolCallKey"]

ToolCallKey = tuple[str, str, str, str, str, int]
"""A journaled tool call's key: (run id, task, visit digest, tool, arguments digest, nth)."""


@runtime_checkable
class RunStore(CheckpointStore, CacheStore, Protocol):
    """Everything a run persists. ``begin_run`` ... ``load_iterations`` are the checkpoint
    journal (:class:`CheckpointStore`), ``cache_*`` the result cache (:class:`CacheStore`).

    Example:
        >>> import tempfile
        >>> from ray_orch.store.factory import open_store
        >>> store = open_store(tempfile.mkdtemp())
        >>> isinstance(store, RunStore)
        True
        >>> store.save_tool_call(("r1", "t", "v", "lookup", "k", 0), {"result": "42"})
        >>> store.load_tool_call(("r1", "t", "v", "lookup", "k", 0))["result"]
        '42'
    """

    spec: str
    """The spec it was opened from (a directory or a DSN: may hold a password; never shown)."""

    # -- tool calls (tools/journal.py) ------------------------------------------------

    def save_tool_call(self, key: ToolCallKey, record: dict[str, Any]) -> None:
        """Record a completed tool call, durably (a later save of the same key replaces it)."""
        ...

    def load_tool_call(self, key: ToolCallKey) -> dict[str, Any] | None:
        """The record of a journaled call, or None."""
        ...

    def tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        """Every journaled tool call of a run, oldest first."""
        ...

    # -- approvals and paused runs (store/approvals.py) ------------------------------------

    def save_request(self, run_id: str, request: dict[str, Any]) -> None:
        """Record a pending approval request (``ApprovalRequest.to_dict()``: ``id`` and
        ``task`` keys); asking again keeps the first record."""
        ...

    def save_answer(self, run_id: str, request_id: str, answer: dict[str, Any]) -> None:
        """Record the answer to a request."""
        ...

    def pending_requests(self, run_id: str) -> list[dict[str, Any]]:
        """The requests of ``run_id`` not answered yet, oldest first."""
        ...

    def answers(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The answers given for ``run_id``, by request id."""
        ...

    def save_definition(self, run_id: str, *, workflow: str, mode: str, blob: bytes,
                        tag: str) -> None:
        """Keep a run's definition (pickled) with its authentication tag
        (:func:`~ray_orch.store.definitions.sign`), to continue it from anywhere."""
        ...

    def load_definition(self, run_id: str) -> tuple[str, bytes, str] | None:
        """``(mode, blob, tag)`` of a stored definition, or None. Check the tag
        (:func:`~ray_orch.store.definitions.verify`) before unpickling the blob."""
        ...

    def set_paused(self, run_id: str, paused: bool) -> None:
        """Mark a run whose definition is stored as paused (waiting for answers) or not."""
        ...

    def paused_runs(self) -> list[dict[str, Any]]:
        """Every paused run: ``run_id``, ``workflow``, ``mode``, ``paused_at``."""
        ...

    # -- run graphs (the run viewer) ---------------------------------------------------------

    def save_graph(self, run_id: str, workflow: str, definition: dict[str, Any]) -> None:
        """Keep a run's plain workflow definition (``Graph.definition()``: tasks, types,
        dependencies, routes, schemas; tasks in their order), so that a reader draws the
        run's graph; a resumed run's replaces the earlier one."""
        ...

    def load_graph(self, run_id: str) -> dict[str, Any] | None:
        """The definition :meth:`save_graph` kept, tasks in their order; None if none."""
        ...

    # -- detached runs (api/jobs.py) ----------------------------------------------------

    def save_result(self, run_id: str, report: dict[str, Any]) -> None:
        """Store a detached run's final report (status, error, outputs) by run id."""
        ...

    def load_result(self, run_id: str) -> dict[str, Any] | None:
        """A detached run's report, or None."""
        ...
