"""The default checkpoint store: one SQLite file in WAL mode, ``synchronous=FULL``.

See :mod:`ray_orch.store.checkpoint` for the protocol it implements and the integrity checks
(checksums, secret scrubbing) every record goes through.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray_orch.store.checkpoint import (
    RunRecord,
    check_drift,
    corrupt_error,
    make_private_dirs,
    open_private,
    seal,
    unseal,
)

__all__ = ["SQLITE_FILENAME", "SQLiteCheckpointStore"]

SQLITE_FILENAME = "ray_orch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, definition_hash TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, created_at);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, payload TEXT NOT NULL,
    checksum TEXT NOT NULL, saved_at REAL NOT NULL, PRIMARY KEY (run_id, task_id));
CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, visit INTEGER NOT NULL,
    payload TEXT NOT NULL, checksum TEXT NOT NULL, saved_at REAL NOT NULL,
    PRIMARY KEY (run_id, task_id, visit));
CREATE TABLE IF NOT EXISTS iterations (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL,
    payload TEXT NOT NULL, checksum TEXT NOT NULL, saved_at REAL NOT NULL,
    PRIMARY KEY (run_id, task_id, idx));
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, payload TEXT NOT NULL, checksum TEXT NOT NULL,
    expires_at REAL, saved_at REAL NOT NULL);
"""
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT_CODES:
        return True
    # Locks, full disks and misuse are not corruption; a bare DatabaseError is.
    return type(exc) is sqlite3.DatabaseError


class SQLiteCheckpointStore:
    """The default store: ``<directory>/ray_orch.sqlite`` in WAL mode, ``synchronous=FULL``.

    Each write is its own transaction, durable when the call returns. Several processes
    may open the same directory: each process (and each fork) opens its own connection,
    and writers wait for each other (``busy_timeout``). The store pickles as its
    directory, so it can be handed to an actor.

    Args:
        directory: created if missing.
        busy_timeout_s: how long a write waits for another process's write.

    Example:
        >>> import tempfile
        >>> store = SQLiteCheckpointStore(tempfile.mkdtemp())
        >>> store.begin_run("r1", "demo", "abc").status
        'running'
    """

    def __init__(self, directory: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.directory = Path(directory).absolute()
        make_private_dirs(self.directory)
        self.location = str(self.directory / SQLITE_FILENAME)
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "busy_timeout_s": self._busy_timeout_ms / 1000}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], busy_timeout_s=state["busy_timeout_s"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.directory)!r})"

    def __enter__(self) -> SQLiteCheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's connection (it is reopened on next use)."""
        with self._lock:
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection inherited through fork must not be used (nor closed) here.
        self._pid = os.getpid()
        with contextlib.suppress(FileExistsError):  # 0600: it holds prompts and outputs
            os.close(open_private(self.location))
        conn = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout_ms / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._set_up(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL beside another process doing the same fails at once
        # with "database is locked": SQLite does not wait there as it does for writes.
        # Every step is idempotent, so it is tried again until the busy timeout.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = 0.005
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    @contextlib.contextmanager
    def _db(self, *, write: bool = False, run_id: str | None = None,
            task_id: str | None = None) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                conn = self._connection()
                if not write:
                    yield conn
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc):
                    self._drop_connection()
                    raise corrupt_error("database", self.location, run_id=run_id,
                                        task_id=task_id, why=str(exc)) from exc
                raise

    def _run_from_row(self, row: tuple[Any, ...], resumed: bool = False) -> RunRecord:
        return RunRecord(run_id=row[0], workflow=row[1], definition_hash=row[2], status=row[3],
                         created_at=row[4], updated_at=row[5], resumed=resumed)

    _RUN_COLS = "run_id, workflow, definition_hash, status, created_at, updated_at"

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False) -> RunRecord:
        """See :meth:`CheckpointStore.begin_run`."""
        now = time.time()
        with self._db(write=True, run_id=run_id) as db:
            row = db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
            if row is None:
                db.execute("INSERT INTO runs VALUES (?, ?, ?, 'running', ?, ?)",
                           (run_id, workflow, definition_hash, now, now))
                return RunRecord(run_id=run_id, workflow=workflow,
                                 definition_hash=definition_hash, created_at=now, updated_at=now)
            existing = self._run_from_row(row)
            check_drift(existing, definition_hash, allow_drift)
            db.execute("UPDATE runs SET status = 'running', definition_hash = ?, updated_at = ? "
                       "WHERE run_id = ?", (definition_hash, now, run_id))
            return existing.model_copy(update={"status": "running", "updated_at": now,
                                               "definition_hash": definition_hash,
                                               "resumed": True})

    def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.get_run`."""
        with self._db(run_id=run_id) as db:
            row = db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
        return None if row is None else self._run_from_row(row)

    def latest_run(self, workflow: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.latest_run`."""
        with self._db() as db:
            row = db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE workflow = ? "
                             "ORDER BY created_at DESC, rowid DESC LIMIT 1",
                             (workflow,)).fetchone()
        return None if row is None else self._run_from_row(row)

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """See :meth:`CheckpointStore.list_runs`."""
        with self._db() as db:
            rows = db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE ?1 IS NULL OR "
                              "workflow = ?1 ORDER BY created_at, rowid", (workflow,)).fetchall()
        return [self._run_from_row(row) for row in rows]

    def finish_run(self, run_id: str, status: str) -> None:
        """See :meth:`CheckpointStore.finish_run`."""
        with self._db(write=True, run_id=run_id) as db:
            cur = db.execute("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                             (status, time.time(), run_id))
            if cur.rowcount == 0:
                raise KeyError(f"no run {run_id!r} in {self.location}")

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_task`."""
        text, checksum = seal(output)
        with self._db(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?)",
                       (run_id, task_id, text, checksum, time.time()))

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.load_task`."""
        with self._db(run_id=run_id, task_id=task_id) as db:
            row = db.execute("SELECT payload, checksum FROM tasks WHERE run_id = ? AND "
                             "task_id = ?", (run_id, task_id)).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], "record", self.location, run_id=run_id, task_id=task_id)

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_tasks`."""
        with self._db(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, payload, checksum FROM tasks WHERE run_id = ?",
                              (run_id,)).fetchall()
        return {task_id: unseal(text, checksum, "record", self.location, run_id=run_id,
                                task_id=task_id)
                for task_id, text, checksum in rows}

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """See :meth:`CheckpointStore.save_decision`."""
        text, checksum = seal(route)
        with self._db(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, task_id, visit, text, checksum, time.time()))

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """See :meth:`CheckpointStore.load_decisions`."""
        with self._db(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, visit, payload, checksum FROM decisions "
                              "WHERE run_id = ?", (run_id,)).fetchall()
        return {(task_id, visit): unseal(text, checksum, "decision", self.location,
                                         run_id=run_id, task_id=task_id)
                for task_id, visit, text, checksum in rows}

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_iteration`."""
        text, checksum = seal(output)
        with self._db(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT OR REPLACE INTO iterations VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, task_id, index, text, checksum, time.time()))

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_iterations`."""
        with self._db(run_id=run_id, task_id=task_id) as db:
            rows = db.execute("SELECT idx, payload, checksum FROM iterations WHERE run_id = ? "
                              "AND task_id = ? ORDER BY idx", (run_id, task_id)).fetchall()
        return {idx: unseal(text, checksum, f"iteration {idx}", self.location,
                            run_id=run_id, task_id=task_id)
                for idx, text, checksum in rows}

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.cache_get`."""
        with self._db() as db:
            row = db.execute("SELECT payload, checksum FROM cache WHERE key = ? AND "
                             "(expires_at IS NULL OR expires_at > ?)", (key, now)).fetchone()
        if row is None:
            return None
        return unseal(row[0], row[1], f"cache entry {key[:12]}", self.location)

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """See :meth:`CheckpointStore.cache_put`."""
        text, checksum = seal(value)
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?)",
                       (key, text, checksum, expires_at, time.time()))

    def cache_delete(self, key: str) -> None:
        """See :meth:`CheckpointStore.cache_delete`."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM cache WHERE key = ?", (key,))

    def cache_clear(self) -> None:
        """See :meth:`CheckpointStore.cache_clear`."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM cache")
