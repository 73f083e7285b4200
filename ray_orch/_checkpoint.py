"""Checkpoint stores: crash-safe records of a run, keyed by run id and task id.

A run's checkpoint holds each completed task's output, each decision taken (per visit of
a decision task) and each loop iteration, so that a resumed run skips finished work.
Records are keyed by ``(run_id, task_id)``, never by position, so a resumed run cannot
replay one task's output onto another.

Two stores implement :class:`CheckpointStore`:

- :class:`SQLiteCheckpointStore`, the default: one file ``<dir>/ray_orch.sqlite`` in WAL
  mode with ``synchronous=FULL``; every write is its own transaction.
- :class:`JsonDirCheckpointStore`: the guide's file-per-task layout, each file written
  through a temporary file, fsync, ``os.replace`` and an fsync of the directory.

Every payload is stored with the SHA-256 of its canonical JSON and checked on load: a
torn or tampered record raises :class:`~ray_orch._errors.CheckpointCorruptError` and is
never returned. Every payload passes through :func:`scrub_secrets` before it is written.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import secrets as _secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from ._errors import CheckpointCorruptError, ResumeError

__all__ = [
    "CheckpointStore",
    "JsonDirCheckpointStore",
    "RunRecord",
    "SQLiteCheckpointStore",
    "canonical_json",
    "definition_hash",
    "new_run_id",
    "scrub_secrets",
]

SQLITE_FILENAME = "ray_orch.sqlite"
_REDACTED = "***"


# --------------------------------------------------------------------------- helpers


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` that checksums and keys are computed over.

    Example:
        >>> canonical_json({"b": 1, "a": [1, 2]})
        '{"a":[1,2],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def definition_hash(definition: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a workflow definition.

    Args:
        definition: a plain, JSON-serialisable dict describing the workflow (task names,
            descriptions, types, edges, schemas, agent roles and models).

    Returns:
        64 hex digits; equal definitions (whatever their key order) hash equal.

    Raises:
        TypeError: when ``definition`` holds a value JSON cannot represent.

    Example:
        >>> definition_hash({"a": 1, "b": 2}) == definition_hash({"b": 2, "a": 1})
        True
    """
    return _sha256(canonical_json(definition))


def new_run_id() -> str:
    """A fresh run id: UTC time (sortable) plus 6 random hex digits.

    Example:
        >>> len(new_run_id().split("-"))
        3
    """
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)


# Key names whose values are credentials; matched on the last words of a snake-cased key
# so that ``tokens_used`` or ``max_tokens`` are kept while ``access_token`` is not.
_SECRET_KEY_RE = re.compile(
    r"(?:^|_)(?:api_?key|authorization|auth|token|secret|password|passwd|private_?key"
    r"|secret_?key|access_?key|credentials?|cookie|set_cookie)$"
)
_SECRET_ENV_SUFFIXES = ("_API_KEY", "_APIKEY", "_TOKEN", "_SECRET", "_SECRET_KEY",
                        "_SECRET_ACCESS_KEY", "_PASSWORD")
# Env values shorter than this are not treated as secrets: replacing e.g. "1" everywhere
# would mangle outputs and protect nothing.
_MIN_ENV_SECRET_LEN = 8
_SECRET_VALUE_PATTERNS = (
    # 16+ characters so that prose ("the Bearer of bad news") is left alone.
    (re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]{16,}=*"), "Bearer " + _REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"), _REDACTED),
)


def _is_secret_key(key: str) -> bool:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower().replace("-", "_")
    return bool(_SECRET_KEY_RE.search(snake))


def _env_secrets() -> list[str]:
    return [value for name, value in os.environ.items()
            if name.upper().endswith(_SECRET_ENV_SUFFIXES) and len(value) >= _MIN_ENV_SECRET_LEN]


def scrub_secrets(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of ``obj`` with credentials replaced by ``"***"``.

    Values (strings, dicts, lists) under keys named like ``api_key``, ``apiKey``,
    ``x-api-key``, ``authorization``, ``token``, ``access_token``, ``secret``,
    ``password`` (and a few more: ``cookie``, ``private_key``, ...) are replaced;
    ``tokens_used`` or ``max_tokens`` are not, nor are numbers, booleans and None. In every string (keys included), each occurrence of a given
    secret, of the value of an environment variable whose name ends in ``_API_KEY``,
    ``_TOKEN``, ``_SECRET`` (or ``_PASSWORD``, ``_SECRET_KEY``; values of 8+ characters,
    read at call time), of ``Bearer <16+ chars>`` and of ``sk-...`` style keys is replaced.

    Args:
        obj: plain JSON-like data (dicts, lists, tuples, strings, numbers).
        secrets: further strings to remove wherever they occur.

    Returns:
        The scrubbed copy; ``obj`` itself is not changed.

    Example:
        >>> scrub_secrets({"api_key": "k", "text": "pw=hunter22"}, secrets=["hunter22"])
        {'api_key': '***', 'text': 'pw=***'}
    """
    values = sorted({s for s in (*secrets, *_env_secrets()) if s}, key=len, reverse=True)

    def text(s: str) -> str:
        for value in values:
            if value in s:
                s = s.replace(value, _REDACTED)
        for pattern, replacement in _SECRET_VALUE_PATTERNS:
            s = pattern.sub(replacement, s)
        return s

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return text(node)
        if isinstance(node, dict):
            return {(text(k) if isinstance(k, str) else k):
                    (_REDACTED if isinstance(k, str) and _is_secret_key(k)
                     and isinstance(v, (str, dict, list, tuple)) else walk(v))
                    for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(item) for item in node)
        return copy.deepcopy(node)

    return walk(obj)


def _seal(payload: Any) -> tuple[str, str]:
    """Scrub, serialise and checksum a payload: ``(canonical text, sha256)``."""
    text = canonical_json(scrub_secrets(payload))
    return text, _sha256(text)


def _corrupt(what: str, path: str | os.PathLike[str], *, run_id: str | None = None,
             task_id: str | None = None, why: str) -> CheckpointCorruptError:
    where = " ".join(part for part in (
        f"run {run_id!r}" if run_id is not None else "",
        f"task {task_id!r}" if task_id is not None else "") if part)
    err = CheckpointCorruptError(
        f"checkpoint {what}{' of ' + where if where else ''} in {os.fspath(path)} is corrupt "
        f"({why}); it was not loaded. Delete the file or start a new run (a new run id).")
    err.run_id = run_id  # type: ignore[attr-defined]
    err.task = task_id  # type: ignore[attr-defined]
    err.path = os.fspath(path)  # type: ignore[attr-defined]
    return err


def _unseal(text: Any, checksum: Any, what: str, path: str | os.PathLike[str], *,
            run_id: str | None = None, task_id: str | None = None) -> Any:
    """Verify a stored payload against its checksum and parse it."""
    if not isinstance(text, str) or not isinstance(checksum, str):
        raise _corrupt(what, path, run_id=run_id, task_id=task_id, why="record incomplete")
    if _sha256(text) != checksum:
        raise _corrupt(what, path, run_id=run_id, task_id=task_id, why="checksum mismatch")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _corrupt(what, path, run_id=run_id, task_id=task_id,
                       why=f"unparsable JSON: {exc}") from exc


# --------------------------------------------------------------------------- protocol


class RunRecord(BaseModel):
    """What a store knows about one run.

    Attributes:
        run_id: the run's stable id.
        workflow: the workflow's name.
        definition_hash: :func:`definition_hash` of the workflow the run executes.
        status: ``"running"``, then what :meth:`CheckpointStore.finish_run` set
            (``"completed"``, ``"failed"``, ``"cancelled"``).
        created_at, updated_at: Unix times.
        resumed: True when :meth:`CheckpointStore.begin_run` found the run already there.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    definition_hash: str
    status: str = "running"
    created_at: float
    updated_at: float
    resumed: bool = False


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a run's durable state lives. Other backends implement the same methods.

    Every ``save_*`` scrubs secrets (:func:`scrub_secrets`) and is atomic and durable
    when it returns; every ``load_*`` verifies checksums and raises
    :class:`~ray_orch._errors.CheckpointCorruptError` rather than return a damaged record.

    Example:
        >>> import tempfile
        >>> store = SQLiteCheckpointStore(tempfile.mkdtemp())
        >>> run = store.begin_run("r1", "demo", definition_hash({"tasks": ["a"]}))
        >>> store.save_task("r1", "a", {"raw": "done", "task_id": "a"})
        >>> store.load_tasks("r1")["a"]["raw"]
        'done'
    """

    location: str
    """Path of the store (file or directory), for messages."""

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False) -> RunRecord:
        """Create the run, or reopen it for resuming.

        Args:
            run_id: the run's id (:func:`new_run_id` for a new run).
            workflow: the workflow's name.
            definition_hash: :func:`definition_hash` of the current workflow.
            allow_drift: accept a changed definition when resuming; the stored hash is
                then replaced by the new one.

        Returns:
            The run's record; ``resumed`` tells whether it existed already (its status
            is set back to ``"running"``).

        Raises:
            ResumeError: the run exists with another definition hash and not allow_drift.
            CheckpointCorruptError: the store is damaged.

        Example:
            >>> store.begin_run("r1", "demo", "abc").resumed  # doctest: +SKIP
            False
        """
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when the store has no such run."""
        ...

    def latest_run(self, workflow: str) -> RunRecord | None:
        """The most recently created run of ``workflow``, or None."""
        ...

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """All runs (of ``workflow`` when given), oldest first."""
        ...

    def finish_run(self, run_id: str, status: str) -> None:
        """Record the run's final status.

        Raises:
            KeyError: no such run.
        """
        ...

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any]) -> None:
        """Persist a completed task's output (``TaskOutput.model_dump(mode="json")``).

        A later save for the same task (a task visited again in a cycle) replaces it.
        """
        ...

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """One task's saved output, or None."""
        ...

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every saved task output of the run, by task id.

        Raises:
            CheckpointCorruptError: a record failed its integrity check (names run, task
                and file); nothing is returned.
        """
        ...

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """Persist the route a decision task took on its ``visit``-th run (from 0 or 1)."""
        ...

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """Every decision taken in the run, keyed by ``(task_id, visit)``."""
        ...

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """Persist loop iteration ``index`` of a loop task."""
        ...

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """The saved iterations of one loop task, by index."""
        ...

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """The cached value under ``key`` if it has not expired at ``now`` (Unix time).

        Raises:
            CheckpointCorruptError: the entry failed its integrity check.
        """
        ...

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """Store ``value`` under ``key`` until ``expires_at`` (None: no expiry)."""
        ...

    def cache_delete(self, key: str) -> None:
        """Forget one cache entry (no error when absent)."""
        ...

    def cache_clear(self) -> None:
        """Forget every cache entry."""
        ...

    def close(self) -> None:
        """Release open handles; the store reopens them if used again."""
        ...


def _check_drift(existing: RunRecord, new_hash: str, allow_drift: bool) -> None:
    if existing.definition_hash != new_hash and not allow_drift:
        raise ResumeError(
            f"cannot resume run {existing.run_id!r}: it was checkpointed with workflow "
            f"definition {existing.definition_hash} but the workflow now hashes to "
            f"{new_hash}; tasks, edges, schemas or agents changed since. Pass "
            f"allow_drift=True to resume anyway (saved outputs are reused by task id), or "
            f"start a new run.")


# --------------------------------------------------------------------------- SQLite

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
        self.directory.mkdir(parents=True, exist_ok=True)
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
        conn = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout_ms / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

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
                    raise _corrupt("database", self.location, run_id=run_id, task_id=task_id,
                                   why=str(exc)) from exc
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
            _check_drift(existing, definition_hash, allow_drift)
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
        text, checksum = _seal(output)
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
        return _unseal(row[0], row[1], "record", self.location, run_id=run_id, task_id=task_id)

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_tasks`."""
        with self._db(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, payload, checksum FROM tasks WHERE run_id = ?",
                              (run_id,)).fetchall()
        return {task_id: _unseal(text, checksum, "record", self.location, run_id=run_id,
                                 task_id=task_id)
                for task_id, text, checksum in rows}

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """See :meth:`CheckpointStore.save_decision`."""
        text, checksum = _seal(route)
        with self._db(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, task_id, visit, text, checksum, time.time()))

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """See :meth:`CheckpointStore.load_decisions`."""
        with self._db(run_id=run_id) as db:
            rows = db.execute("SELECT task_id, visit, payload, checksum FROM decisions "
                              "WHERE run_id = ?", (run_id,)).fetchall()
        return {(task_id, visit): _unseal(text, checksum, "decision", self.location,
                                          run_id=run_id, task_id=task_id)
                for task_id, visit, text, checksum in rows}

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_iteration`."""
        text, checksum = _seal(output)
        with self._db(write=True, run_id=run_id, task_id=task_id) as db:
            db.execute("INSERT OR REPLACE INTO iterations VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, task_id, index, text, checksum, time.time()))

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_iterations`."""
        with self._db(run_id=run_id, task_id=task_id) as db:
            rows = db.execute("SELECT idx, payload, checksum FROM iterations WHERE run_id = ? "
                              "AND task_id = ? ORDER BY idx", (run_id, task_id)).fetchall()
        return {idx: _unseal(text, checksum, f"iteration {idx}", self.location,
                             run_id=run_id, task_id=task_id)
                for idx, text, checksum in rows}

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.cache_get`."""
        with self._db() as db:
            row = db.execute("SELECT payload, checksum FROM cache WHERE key = ? AND "
                             "(expires_at IS NULL OR expires_at > ?)", (key, now)).fetchone()
        if row is None:
            return None
        return _unseal(row[0], row[1], f"cache entry {key[:12]}", self.location)

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """See :meth:`CheckpointStore.cache_put`."""
        text, checksum = _seal(value)
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


# --------------------------------------------------------------------------- JSON files


def _safe_name(name: str) -> str:
    """An injective, traversal-free file name for a run or task id.

    Names starting with ``_`` are reserved for the store's own files.
    """
    quoted = quote(name, safe="")
    if quoted[:1] in ("_", ".", ""):
        quoted = f"%{ord(quoted[0]):02X}{quoted[1:]}" if quoted else "%"
    if len(quoted) > 150:
        quoted = f"{quoted[:100]}~{_sha256(name)[:32]}"
    return quoted


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonDirCheckpointStore:
    """The guide's layout: one JSON file per task, ``<directory>/<run_id>/<task_id>.json``.

    Each file is written to a temporary file, fsynced, moved into place with
    ``os.replace`` and the directory fsynced, so a reader sees the old file or the new
    one, never half of one; leftover ``*.tmp`` files of a crash are ignored. Each file
    holds its payload's checksum. Decisions live in ``<run_id>/_decisions/``, loop
    iterations in ``<run_id>/_iterations/<task_id>/``, the run record in
    ``<run_id>/_run.json`` and cache entries in ``<directory>/_cache/``. Writes to one
    file from several processes: the last one wins.

    Args:
        directory: created if missing.

    Example:
        >>> import tempfile
        >>> store = JsonDirCheckpointStore(tempfile.mkdtemp())
        >>> _ = store.begin_run("r1", "demo", "abc")
        >>> store.save_task("r1", "a", {"raw": "done"})
        >>> store.load_tasks("r1")
        {'a': {'raw': 'done'}}
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.location = str(self.directory)

    def __repr__(self) -> str:
        return f"JsonDirCheckpointStore({self.location!r})"

    def close(self) -> None:
        """Nothing to release: every call opens and closes its files."""

    def _run_dir(self, run_id: str) -> Path:
        return self.directory / _safe_name(run_id)

    def _write(self, path: Path, record: dict[str, Any], payload: Any) -> None:
        clean = scrub_secrets(payload)
        checksum = _sha256(canonical_json(clean))
        body = canonical_json({**record, "checksum": checksum, "saved_at": time.time(),
                               "payload": clean})
        self._make_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    def _make_dirs(self, folder: Path) -> None:
        # A new directory entry is durable only once its parent is fsynced.
        missing = []
        while not folder.exists() and folder != self.directory:
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            with contextlib.suppress(FileExistsError):
                created.mkdir()
            _fsync_dir(created.parent)

    def _read(self, path: Path, what: str, *, run_id: str | None = None,
              task_id: str | None = None) -> tuple[dict[str, Any], Any] | None:
        """``(record fields, verified payload)`` of one file, or None if it is absent."""
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise _corrupt(what, path, run_id=run_id, task_id=task_id, why=str(exc)) from exc
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise _corrupt(what, path, run_id=run_id, task_id=task_id,
                           why=f"unparsable JSON: {exc}") from exc
        if not isinstance(record, dict) or "payload" not in record:
            raise _corrupt(what, path, run_id=run_id, task_id=task_id, why="not a record")
        # json round-trips floats exactly, so the canonical text is the one checksummed.
        payload = _unseal(canonical_json(record["payload"]), record.get("checksum"), what, path,
                          run_id=run_id, task_id=record.get("task_id", task_id))
        return record, payload

    def _records(self, folder: Path, what: str, run_id: str) -> Iterator[tuple[dict[str, Any], Any]]:
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith(("_", ".")) or not path.is_file():
                continue
            found = self._read(path, what, run_id=run_id)
            if found is not None:
                yield found

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False) -> RunRecord:
        """See :meth:`CheckpointStore.begin_run`."""
        existing = self.get_run(run_id)
        now = time.time()
        if existing is None:
            run = RunRecord(run_id=run_id, workflow=workflow, definition_hash=definition_hash,
                            created_at=now, updated_at=now)
        else:
            _check_drift(existing, definition_hash, allow_drift)
            run = existing.model_copy(update={"status": "running", "updated_at": now,
                                              "definition_hash": definition_hash})
        self._write(self._run_dir(run_id) / "_run.json", {"kind": "run", "run_id": run_id},
                    run.model_dump(exclude={"resumed"}))
        return run.model_copy(update={"resumed": existing is not None})

    def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.get_run`."""
        found = self._read(self._run_dir(run_id) / "_run.json", "run record", run_id=run_id)
        return None if found is None else RunRecord.model_validate(found[1])

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """See :meth:`CheckpointStore.list_runs`."""
        runs = []
        for path in self.directory.glob("*/_run.json"):
            found = self._read(path, "run record")
            if found is not None:
                run = RunRecord.model_validate(found[1])
                if workflow is None or run.workflow == workflow:
                    runs.append(run)
        return sorted(runs, key=lambda r: (r.created_at, r.run_id))

    def latest_run(self, workflow: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.latest_run`."""
        runs = self.list_runs(workflow)
        return runs[-1] if runs else None

    def finish_run(self, run_id: str, status: str) -> None:
        """See :meth:`CheckpointStore.finish_run`."""
        run = self.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r} in {self.location}")
        run = run.model_copy(update={"status": status, "updated_at": time.time()})
        self._write(self._run_dir(run_id) / "_run.json", {"kind": "run", "run_id": run_id},
                    run.model_dump(exclude={"resumed"}))

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_task`."""
        self._write(self._run_dir(run_id) / f"{_safe_name(task_id)}.json",
                    {"kind": "task", "run_id": run_id, "task_id": task_id}, output)

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.load_task`."""
        found = self._read(self._run_dir(run_id) / f"{_safe_name(task_id)}.json", "record",
                           run_id=run_id, task_id=task_id)
        return None if found is None else found[1]

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_tasks`."""
        return {record["task_id"]: payload
                for record, payload in self._records(self._run_dir(run_id), "record", run_id)}

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """See :meth:`CheckpointStore.save_decision`."""
        self._write(self._run_dir(run_id) / "_decisions" / f"{_safe_name(task_id)}.{visit}.json",
                    {"kind": "decision", "run_id": run_id, "task_id": task_id, "visit": visit},
                    route)

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """See :meth:`CheckpointStore.load_decisions`."""
        folder = self._run_dir(run_id) / "_decisions"
        return {(record["task_id"], record["visit"]): payload
                for record, payload in self._records(folder, "decision", run_id)}

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_iteration`."""
        folder = self._run_dir(run_id) / "_iterations" / _safe_name(task_id)
        self._write(folder / f"{index}.json", {"kind": "iteration", "run_id": run_id,
                                               "task_id": task_id, "index": index}, output)

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_iterations`."""
        folder = self._run_dir(run_id) / "_iterations" / _safe_name(task_id)
        found = {record["index"]: payload
                 for record, payload in self._records(folder, "iteration", run_id)}
        return dict(sorted(found.items()))

    def _cache_path(self, key: str) -> Path:
        return self.directory / "_cache" / f"{_safe_name(key)}.json"

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.cache_get`."""
        found = self._read(self._cache_path(key), f"cache entry {key[:12]}")
        if found is None:
            return None
        expires_at = found[0].get("expires_at")
        return found[1] if expires_at is None or expires_at > now else None

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """See :meth:`CheckpointStore.cache_put`."""
        self._write(self._cache_path(key), {"kind": "cache", "key": key,
                                            "expires_at": expires_at}, value)

    def cache_delete(self, key: str) -> None:
        """See :meth:`CheckpointStore.cache_delete`."""
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(key).unlink()

    def cache_clear(self) -> None:
        """See :meth:`CheckpointStore.cache_clear`."""
        for path in (self.directory / "_cache").glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
