"""What both SQL backends share: the statements of every :class:`~ray_orch.store.port.RunStore`
method and the schema's version table. A backend supplies ``_tx`` (a transaction on one
connection) and its DDL; statements are written with ``?`` placeholders, which the
PostgreSQL backend turns into ``%s``. Upserts use ``ON CONFLICT ... DO UPDATE``, which
SQLite (3.24+) and PostgreSQL both speak.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Protocol

from ray_orch.core.errors import StoreError
from ray_orch.store.checkpoint import RunRecord, check_drift, seal, unseal
from ray_orch.store.port import ToolCallKey

__all__ = ["SCHEMA_VERSION", "Db", "SQLRunStore", "migrations", "schema_v1", "schema_v2"]

SCHEMA_VERSION = 2
"""The schema this code writes; a store at a later version is refused (upgrade ray-orch)."""


def schema_v1(*, real: str, blob: str) -> list[str]:
    """Version 1 of the schema, with the backend's float and bytes types."""
    return [
        f"""CREATE TABLE IF NOT EXISTS runs (
            run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, definition_hash TEXT NOT NULL,
            status TEXT NOT NULL, created_at {real} NOT NULL, updated_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, created_at)",
        f"""CREATE TABLE IF NOT EXISTS tasks (
            run_id TEXT NOT NULL, task_id TEXT NOT NULL, payload TEXT NOT NULL,
            checksum TEXT NOT NULL, saved_at {real} NOT NULL, PRIMARY KEY (run_id, task_id))""",
        f"""CREATE TABLE IF NOT EXISTS decisions (
            run_id TEXT NOT NULL, task_id TEXT NOT NULL, visit INTEGER NOT NULL,
            payload TEXT NOT NULL, checksum TEXT NOT NULL, saved_at {real} NOT NULL,
            PRIMARY KEY (run_id, task_id, visit))""",
        f"""CREATE TABLE IF NOT EXISTS iterations (
            run_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL,
            payload TEXT NOT NULL, checksum TEXT NOT NULL, saved_at {real} NOT NULL,
            PRIMARY KEY (run_id, task_id, idx))""",
        f"""CREATE TABLE IF NOT EXISTS cache (
            key TEXT PRIMARY KEY, payload TEXT NOT NULL, checksum TEXT NOT NULL,
            expires_at {real}, saved_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS tool_calls (
            run_id TEXT NOT NULL, task_id TEXT NOT NULL, visit TEXT NOT NULL,
            tool TEXT NOT NULL, args_key TEXT NOT NULL, nth INTEGER NOT NULL,
            payload TEXT NOT NULL, checksum TEXT NOT NULL, saved_at {real} NOT NULL,
            PRIMARY KEY (run_id, task_id, visit, tool, args_key, nth))""",
        f"""CREATE TABLE IF NOT EXISTS approvals (
            run_id TEXT NOT NULL, request_id TEXT NOT NULL, task_id TEXT NOT NULL,
            payload TEXT NOT NULL, checksum TEXT NOT NULL, answer TEXT, answer_checksum TEXT,
            asked_at {real} NOT NULL, answered_at {real}, PRIMARY KEY (run_id, request_id))""",
        f"""CREATE TABLE IF NOT EXISTS definitions (
            run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, mode TEXT NOT NULL,
            blob {blob} NOT NULL, tag TEXT NOT NULL, saved_at {real} NOT NULL,
            paused_at {real})""",
        f"""CREATE TABLE IF NOT EXISTS results (
            run_id TEXT PRIMARY KEY, payload TEXT NOT NULL, checksum TEXT NOT NULL,
            saved_at {real} NOT NULL)""",
    ]


def schema_v2(*, real: str) -> list[str]:
    """Version 2: ``graphs``, each run's plain workflow definition
    (``Graph.definition()``), kept when the run begins so that a reader (the run viewer)
    draws any stored run."""
    return [
        f"""CREATE TABLE IF NOT EXISTS graphs (
            run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, payload TEXT NOT NULL,
            checksum TEXT NOT NULL, saved_at {real} NOT NULL)""",
    ]


def migrations(*, real: str, blob: str) -> list[list[str]]:
    """Every schema version's DDL, in order, with the backend's float and bytes types.

    Example:
        >>> len(migrations(real="REAL", blob="BLOB")) == SCHEMA_VERSION
        True
    """
    return [schema_v1(real=real, blob=blob), schema_v2(real=real)]


class Db(Protocol):
    """One connection inside a transaction: ``execute`` returns a DB-API cursor."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        """Run one statement (``?`` placeholders)."""
        ...


_RUN_COLS = "run_id, workflow, definition_hash, status, created_at, updated_at"


class SQLRunStore:
    """The :class:`~ray_orch.store.port.RunStore` methods over SQL; subclasses give
    ``_tx`` and ``_migrations`` (DDL lists, one per schema version from 1)."""

    location: str
    spec: str
    _migrations: list[list[str]]

    def _tx(self, *, write: bool = False, run_id: str | None = None,
            task_id: str | None = None) -> contextlib.AbstractContextManager[Db]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------

    def _migrate(self, db: Db) -> None:
        """Bring the schema to ``SCHEMA_VERSION`` (call inside a write transaction)."""
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] if row and row[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise StoreError(f"the run store {self.location} has schema version {current}, "
                             f"newer than this ray-orch knows ({SCHEMA_VERSION}): upgrade "
                             "ray-orch", store=self.location)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in self._migrations[version - 1]:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        """The schema version the store is at."""
        with self._tx() as db:
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # -- runs ---------------------------------------------------------------------------

    @staticmethod
    def _run(row: Any, resumed: bool = False) -> RunRecord:
        return RunRecord(run_id=row[0], workflow=row[1], definition_hash=row[2], status=row[3],
                         created_at=row[4], updated_at=row[5], resumed=resumed)

    def _lock_run(self, db: Db, run_id: str) -> Any:
        return db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?",
                          (run_id,)).fetchone()

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False, *, fresh: bool = False,
                  graph: dict[str, Any] | None = None) -> RunRecord:
        """See :meth:`CheckpointStore.begin_run`; ``fresh``: the run must not exist yet
        (checked in the same transaction, so two drivers cannot both start it);
        ``graph``: :meth:`save_graph` in the same transaction (one commit, one fsync)."""
        from ray_orch.core.errors import ResumeError

        now = time.time()
        with self._tx(write=True, run_id=run_id) as db:
            row = self._lock_run(db, run_id)
            existing = None if row is None else self._run(row)
            if existing is not None and fresh:
                raise ResumeError(f"run '{run_id}' already has checkpoints in "
                                  f"{self.location}; resume it with workflow(resume="
                                  f"'{run_id}'), or give a new run_id")
            if existing is not None:
                check_drift(existing, definition_hash, allow_drift)
            if graph is not None:
                self._save_graph(db, run_id, workflow, graph)
            if existing is None:
                db.execute("INSERT INTO runs (run_id, workflow, definition_hash, status, "
                           "created_at, updated_at) VALUES (?, ?, ?, 'running', ?, ?)",
                           (run_id, workflow, definition_hash, now, now))
                return RunRecord(run_id=run_id, workflow=workflow,
                                 definition_hash=definition_hash, created_at=now, updated_at=now)
            db.execute("UPDATE runs SET status = 'running', definition_hash = ?, "
                       "updated_at = ? WHERE run_id = ?", (definition_hash, now, run_id))
            return existing.model_copy(update={"status": "running", "updated_at": now,
                                               "definition_hash": definition_hash,
                                               "resumed": True})

    def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.get_run`."""
        with self._tx(run_id=run_id) as db:
            row = db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
        return None if row is None else self._run(row)

    def latest_run(self, workflow: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.latest_run`."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE workflow = ? ORDER BY "
                             "created_at DESC, run_id DESC LIMIT 1", (workflow,)).fetchone()
        return None if row is None else self._run(row)

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """See :meth:`CheckpointStore.list_runs`."""
        with self._tx() as db:
            if workflow is None:
                rows = db.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY created_at, "
                                  "run_id").fetchall()
            else:
                rows = db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE workflow = ? ORDER BY "
                                  "created_at, run_id", (workflow,)).fetchall()
        return [self._run(row) for row in rows]

    def finish_run(self, run_id: str, status: str) -> None:
        """See :meth:`CheckpointStore.finish_run`."""
        with self._tx(write=True, run_id=run_id) as db:
            cur = db.execute("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                             (status, time.time(), run_id))
            if cur.rowcount == 0:
                raise KeyError(f"no run {run_id!r} in {self.location}")

    # -- tasks, decisions, iterations ---------------------------------------------------

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any], *,
                  keep: bool = False) -> None:
        """See :meth:`CheckpointStore.save_task`."""
        text, checksum = seal(output)
        on_conflict = "NOTHING" if keep else (
            "UPDATE SET payload = excluded.payload, checksum = excluded.checksum, "
            "saved_at = excluded.saved_at")
        with self._tx(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT INTO tasks (run_id, task_id, payload, checksum, saved_at) "
                       f"VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id) DO {on_conflict}",
                       (run_id, task_id, text, checksum, time.time()))

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.load_task`."""
        with self._tx(run_id=run_id, task_id=task_id) as db:
            row = db.execute("SELECT payload, checksum FROM tasks WHERE run_id = ? AND "
                             "task_id = ?", (run_id, task_id)).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], "record", self.location, run_id=run_id,  # type: ignore[no-any-return]
                      task_id=task_id)

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_tasks`."""
        with self._tx(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, payload, checksum FROM tasks WHERE run_id = ?",
                              (run_id,)).fetchall()
        return {task_id: unseal(text, checksum, "record", self.location, run_id=run_id,
                                task_id=task_id)
                for task_id, text, checksum in rows}

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """See :meth:`CheckpointStore.save_decision`."""
        text, checksum = seal(route)
        with self._tx(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT INTO decisions (run_id, task_id, visit, payload, checksum, "
                       "saved_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id, "
                       "visit) DO UPDATE SET payload = excluded.payload, checksum = "
                       "excluded.checksum, saved_at = excluded.saved_at",
                       (run_id, task_id, visit, text, checksum, time.time()))

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """See :meth:`CheckpointStore.load_decisions`."""
        with self._tx(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, visit, payload, checksum FROM decisions "
                              "WHERE run_id = ?", (run_id,)).fetchall()
        return {(task_id, visit): unseal(text, checksum, "decision", self.location,
                                         run_id=run_id, task_id=task_id)
                for task_id, visit, text, checksum in rows}

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_iteration`."""
        text, checksum = seal(output)
        with self._tx(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT INTO iterations (run_id, task_id, idx, payload, checksum, "
                       "saved_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id, idx) "
                       "DO UPDATE SET payload = excluded.payload, checksum = "
                       "excluded.checksum, saved_at = excluded.saved_at",
                       (run_id, task_id, index, text, checksum, time.time()))

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_iterations`."""
        with self._tx(run_id=run_id, task_id=task_id) as db:
            rows = db.execute("SELECT idx, payload, checksum FROM iterations WHERE run_id = ? "
                              "AND task_id = ? ORDER BY idx", (run_id, task_id)).fetchall()
        return {idx: unseal(text, checksum, f"iteration {idx}", self.location,
                            run_id=run_id, task_id=task_id)
                for idx, text, checksum in rows}

    # -- cache --------------------------------------------------------------------------

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """See :meth:`CacheStore.cache_get`."""
        with self._tx() as db:
            row = db.execute("SELECT payload, checksum FROM cache WHERE key = ? AND "
                             "(expires_at IS NULL OR expires_at > ?)", (key, now)).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], f"cache entry {key[:12]}", self.location)  # type: ignore[no-any-return]

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """See :meth:`CacheStore.cache_put`."""
        text, checksum = seal(value)
        with self._tx(write=True) as db:
            db.execute("INSERT INTO cache (key, payload, checksum, expires_at, saved_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET payload = "
                       "excluded.payload, checksum = excluded.checksum, expires_at = "
                       "excluded.expires_at, saved_at = excluded.saved_at",
                       (key, text, checksum, expires_at, time.time()))

    def cache_delete(self, key: str) -> None:
        """See :meth:`CacheStore.cache_delete`."""
        with self._tx(write=True) as db:
            db.execute("DELETE FROM cache WHERE key = ?", (key,))

    def cache_clear(self) -> None:
        """See :meth:`CacheStore.cache_clear`."""
        with self._tx(write=True) as db:
            db.execute("DELETE FROM cache")

    # -- tool calls ---------------------------------------------------------------------

    def save_tool_call(self, key: ToolCallKey, record: dict[str, Any]) -> None:
        """See :meth:`RunStore.save_tool_call`."""
        text, checksum = seal(record)
        with self._tx(write=True, run_id=key[0], task_id=key[1]) as db:
            db.execute("INSERT INTO tool_calls (run_id, task_id, visit, tool, args_key, nth, "
                       "payload, checksum, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (run_id, task_id, visit, tool, args_key, nth) DO UPDATE "
                       "SET payload = excluded.payload, checksum = excluded.checksum, "
                       "saved_at = excluded.saved_at", (*key, text, checksum, time.time()))

    def load_tool_call(self, key: ToolCallKey) -> dict[str, Any] | None:
        """See :meth:`RunStore.load_tool_call`."""
        with self._tx(run_id=key[0], task_id=key[1]) as db:
            row = db.execute("SELECT payload, checksum FROM tool_calls WHERE run_id = ? AND "
                             "task_id = ? AND visit = ? AND tool = ? AND args_key = ? AND "
                             "nth = ?", key).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], "tool call", self.location, run_id=key[0],  # type: ignore[no-any-return]
                      task_id=key[1])

    def tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        """See :meth:`RunStore.tool_calls`."""
        with self._tx(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, payload, checksum FROM tool_calls WHERE "
                              "run_id = ? ORDER BY saved_at", (run_id,)).fetchall()
        return [unseal(p, c, "tool call", self.location, run_id=run_id, task_id=t)
                for t, p, c in rows]

    # -- approvals and paused runs --------------------------------------------------------

    def save_request(self, run_id: str, request: dict[str, Any]) -> None:
        """See :meth:`RunStore.save_request`."""
        text, checksum = seal(request)
        with self._tx(write=True, run_id=run_id, task_id=request["task"]) as db:
            db.execute("INSERT INTO approvals (run_id, request_id, task_id, payload, checksum, "
                       "asked_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, request_id) "
                       "DO NOTHING",
                       (run_id, request["id"], request["task"], text, checksum, time.time()))

    def save_answer(self, run_id: str, request_id: str, answer: dict[str, Any]) -> None:
        """See :meth:`RunStore.save_answer`."""
        text, checksum = seal(answer)
        with self._tx(write=True, run_id=run_id) as db:
            db.execute("UPDATE approvals SET answer = ?, answer_checksum = ?, answered_at = ? "
                       "WHERE run_id = ? AND request_id = ?",
                       (text, checksum, time.time(), run_id, request_id))

    def pending_requests(self, run_id: str) -> list[dict[str, Any]]:
        """See :meth:`RunStore.pending_requests`."""
        with self._tx(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, payload, checksum FROM approvals WHERE "
                              "run_id = ? AND answer IS NULL ORDER BY asked_at",
                              (run_id,)).fetchall()
        return [unseal(p, c, "approval request", self.location, run_id=run_id, task_id=t)
                for t, p, c in rows]

    def answers(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`RunStore.answers`."""
        with self._tx(run_id=run_id) as db:
            rows = db.execute("SELECT request_id, task_id, answer, answer_checksum FROM "
                              "approvals WHERE run_id = ? AND answer IS NOT NULL",
                              (run_id,)).fetchall()
        return {r: unseal(a, c, "approval answer", self.location, run_id=run_id, task_id=t)
                for r, t, a, c in rows}

    def save_definition(self, run_id: str, *, workflow: str, mode: str, blob: bytes,
                        tag: str) -> None:
        """See :meth:`RunStore.save_definition`."""
        with self._tx(write=True, run_id=run_id) as db:
            db.execute("INSERT INTO definitions (run_id, workflow, mode, blob, tag, saved_at) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                       "workflow = excluded.workflow, mode = excluded.mode, blob = "
                       "excluded.blob, tag = excluded.tag, saved_at = excluded.saved_at",
                       (run_id, workflow, mode, blob, tag, time.time()))

    def load_definition(self, run_id: str) -> tuple[str, bytes, str] | None:
        """See :meth:`RunStore.load_definition`."""
        with self._tx(run_id=run_id) as db:
            row = db.execute("SELECT mode, blob, tag FROM definitions WHERE run_id = ?",
                             (run_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    def set_paused(self, run_id: str, paused: bool) -> None:
        """See :meth:`RunStore.set_paused`."""
        with self._tx(write=True, run_id=run_id) as db:
            db.execute("UPDATE definitions SET paused_at = ? WHERE run_id = ?",
                       (time.time() if paused else None, run_id))

    def paused_runs(self) -> list[dict[str, Any]]:
        """See :meth:`RunStore.paused_runs`."""
        with self._tx() as db:
            rows = db.execute("SELECT run_id, workflow, mode, paused_at FROM definitions "
                              "WHERE paused_at IS NOT NULL ORDER BY paused_at").fetchall()
        return [{"run_id": r, "workflow": w, "mode": m, "paused_at": at}
                for r, w, m, at in rows]

    # -- run graphs ---------------------------------------------------------------------

    def save_graph(self, run_id: str, workflow: str, definition: dict[str, Any]) -> None:
        """See :meth:`RunStore.save_graph`."""
        with self._tx(write=True, run_id=run_id) as db:
            self._save_graph(db, run_id, workflow, definition)

    def _save_graph(self, db: Any, run_id: str, workflow: str,
                    definition: dict[str, Any]) -> None:
        # Sealed JSON sorts keys: the tasks' order (the scheduler's) is kept beside them.
        text, checksum = seal({"definition": definition,
                               "order": list(definition.get("tasks") or {})})
        db.execute("INSERT INTO graphs (run_id, workflow, payload, checksum, saved_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                   "workflow = excluded.workflow, payload = excluded.payload, checksum = "
                   "excluded.checksum, saved_at = excluded.saved_at",
                   (run_id, workflow, text, checksum, time.time()))

    def load_graph(self, run_id: str) -> dict[str, Any] | None:
        """See :meth:`RunStore.load_graph`."""
        with self._tx(run_id=run_id) as db:
            row = db.execute("SELECT payload, checksum FROM graphs WHERE run_id = ?",
                             (run_id,)).fetchone()
        if row is None:
            return None
        kept = unseal(row[0], row[1], "run graph", self.location, run_id=run_id)
        definition: dict[str, Any] = kept["definition"]
        tasks = definition.get("tasks") or {}
        definition["tasks"] = {name: tasks[name] for name in kept["order"] if name in tasks}
        return definition

    # -- detached runs ------------------------------------------------------------------

    def save_result(self, run_id: str, report: dict[str, Any]) -> None:
        """See :meth:`RunStore.save_result`."""
        text, checksum = seal(report)
        with self._tx(write=True, run_id=run_id) as db:
            db.execute("INSERT INTO results (run_id, payload, checksum, saved_at) VALUES "
                       "(?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET payload = "
                       "excluded.payload, checksum = excluded.checksum, saved_at = "
                       "excluded.saved_at", (run_id, text, checksum, time.time()))

    def load_result(self, run_id: str) -> dict[str, Any] | None:
        """See :meth:`RunStore.load_result`."""
        with self._tx(run_id=run_id) as db:
            row = db.execute("SELECT payload, checksum FROM results WHERE run_id = ?",
                             (run_id,)).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], "run report", self.location,  # type: ignore[no-any-return]
                      run_id=run_id)

