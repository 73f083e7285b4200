"""Memory in one SQLite file: ``<directory>/memory.sqlite``, WAL, ``secure_delete``.

The checkpoints' conventions (``store/sqlite.py``): the folder is 0700, the file 0600,
WAL with ``synchronous=FULL``, one connection per process (and per fork), writers wait for
each other. Erasure is real: ``PRAGMA secure_delete=ON`` overwrites deleted rows with
zeros, and each deletion ends with ``wal_checkpoint(TRUNCATE)``, which copies the zeroed
pages into the file and empties the WAL, so neither file keeps the deleted text or vector.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray_orch.core.errors import StoreError
from ray_orch.core.secrets import scrub_secrets
from ray_orch.store.checkpoint import make_private_dirs
from ray_orch.store.memory import COLUMNS, MemoryRow
from ray_orch.store.sqlite import connect_private

__all__ = ["MEMORY_FILENAME", "SQLiteMemoryStore"]

MEMORY_FILENAME = "memory.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, namespace TEXT NOT NULL,
    kind TEXT NOT NULL, user_id TEXT, agent TEXT, source TEXT, text TEXT NOT NULL,
    metadata TEXT NOT NULL, created_at REAL NOT NULL, embedder TEXT NOT NULL,
    vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS memories_by_namespace ON memories (namespace, embedder, seq);
CREATE INDEX IF NOT EXISTS memories_by_user ON memories (namespace, user_id);
CREATE TABLE IF NOT EXISTS memory_changes (
    namespace TEXT PRIMARY KEY, adds INTEGER NOT NULL, removals INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS knowledge_files (
    namespace TEXT NOT NULL, source TEXT NOT NULL, digest TEXT NOT NULL,
    indexed_at REAL NOT NULL, PRIMARY KEY (namespace, source));
"""


def _vector(blob: bytes) -> Any:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32)


def _blob(vector: Any) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


class SQLiteMemoryStore:
    """Memories in ``<directory>/memory.sqlite``; see the module docstring.

    Args:
        directory: created (0700) if missing.
        busy_timeout_s: how long a write waits for another process's.

    Raises:
        StoreError: the directory cannot be made, or the file is not a memory store.

    Example:
        >>> import tempfile, numpy as np
        >>> store = SQLiteMemoryStore(tempfile.mkdtemp())
        >>> store.add([MemoryRow(id="m1", namespace="n", text="hi", embedder="e",
        ...                      vector=np.ones(2, dtype=np.float32))])
        >>> store.get("n", "m1").text, store.delete("n", {"id": "m1"})
        ('hi', 1)
    """

    def __init__(self, directory: str | os.PathLike[str], *,
                 busy_timeout_s: float = 30.0) -> None:
        self.directory = Path(directory).expanduser().absolute()
        try:
            make_private_dirs(self.directory)
        except OSError as exc:
            raise StoreError(f"memory store {self.directory}: cannot create the folder "
                             f"({exc.strerror or exc})") from None
        if not self.directory.is_dir():
            raise StoreError(f"memory store {self.directory} is not a folder")
        self.location = str(self.directory / MEMORY_FILENAME)
        self._busy_ms = int(busy_timeout_s * 1000)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "busy_timeout_s": self._busy_ms / 1000}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], busy_timeout_s=state["busy_timeout_s"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SQLiteMemoryStore({str(self.directory)!r})"

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._pid = os.getpid()  # a connection inherited through fork is not used
        self._conn = connect_private(self.location, busy_ms=self._busy_ms,
                                     set_up=self._set_up, pragmas=("PRAGMA secure_delete=ON",))
        return self._conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        self._check_version(conn)

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT max(version) FROM memory_schema").fetchone()
        if row[0] is None:
            conn.execute("INSERT INTO memory_schema VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise StoreError(f"memory store {self.location} has schema version {row[0]}, "
                             f"newer than this ray-orch's {SCHEMA_VERSION}: upgrade ray-orch")

    @contextlib.contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
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
                raise StoreError(f"memory store {self.location}: {exc}") from exc

    @staticmethod
    def _bump(db: sqlite3.Connection, namespace: str, adds: int, removals: int) -> None:
        db.execute("INSERT INTO memory_changes VALUES (?, ?, ?) ON CONFLICT(namespace) DO "
                   "UPDATE SET adds = adds + excluded.adds, "
                   "removals = removals + excluded.removals", (namespace, adds, removals))

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[MemoryRow]) -> None:
        db.executemany(  # an id already kept (a task's output remembered again) is kept once
            "INSERT OR IGNORE INTO memories (id, namespace, kind, user_id, agent, source, "
            "text, metadata, created_at, embedder, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.id, r.namespace, r.kind, r.user_id, r.agent, r.source,
              scrub_secrets(r.text), json.dumps(scrub_secrets(r.metadata), default=str),
              r.created_at, r.embedder, _blob(r.vector)) for r in rows])

    def add(self, rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.add``."""
        if not rows:
            return
        with self._db(write=True) as db:
            self._insert(db, rows)
            for namespace in {r.namespace for r in rows}:
                self._bump(db, namespace, 1, 0)

    _COLS = "seq, id, namespace, kind, user_id, agent, source, text, metadata, created_at"

    @staticmethod
    def _row(values: tuple[Any, ...]) -> MemoryRow:
        seq, mid, namespace, kind, user, agent, source, text, meta, created = values
        return MemoryRow(seq=seq, id=mid, namespace=namespace, kind=kind, user_id=user,
                         agent=agent, source=source, text=text, metadata=json.loads(meta),
                         created_at=created)

    def get(self, namespace: str, memory_id: str) -> MemoryRow | None:
        """See ``MemoryStore.get``."""
        with self._db() as db:
            row = db.execute(f"SELECT {self._COLS} FROM memories WHERE namespace = ? AND "
                             "id = ?", (namespace, memory_id)).fetchone()
        return None if row is None else self._row(row)

    def rows(self, namespace: str, seqs: list[int]) -> dict[int, MemoryRow]:
        """See ``MemoryStore.rows``."""
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        with self._db() as db:
            found = db.execute(f"SELECT {self._COLS} FROM memories WHERE namespace = ? AND "
                               f"seq IN ({marks})", (namespace, *seqs)).fetchall()
        return {values[0]: self._row(values) for values in found}

    def delete(self, namespace: str, where: dict[str, Any]) -> int:
        """See ``MemoryStore.delete``."""
        clauses, values = ["namespace = ?"], [namespace]
        for column, value in where.items():
            if column not in COLUMNS:
                raise ValueError(f"cannot delete by {column!r}")
            clauses.append(f"{column} IS ?")
            values.append(value)
        with self._db(write=True) as db:
            gone = db.execute(f"DELETE FROM memories WHERE {' AND '.join(clauses)}",
                              values).rowcount
            if gone:
                self._bump(db, namespace, 0, 1)
        if gone:
            self._erase()
        return int(gone)

    def clear(self, namespace: str) -> int:
        """See ``MemoryStore.clear``."""
        with self._db(write=True) as db:
            gone = db.execute("DELETE FROM memories WHERE namespace = ?", (namespace,)).rowcount
            db.execute("DELETE FROM knowledge_files WHERE namespace = ?", (namespace,))
            self._bump(db, namespace, 0, 1)
        self._erase()
        return int(gone)

    def _erase(self) -> None:
        # secure_delete zeroed the rows in the pages the WAL holds; the checkpoint writes
        # them over the file's, and TRUNCATE empties the WAL. A reader of another process
        # in the middle of a transaction can hold it back: then it is tried again.
        deadline = time.monotonic() + self._busy_ms / 1000
        with self._db() as db:
            while True:
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if busy:
            raise StoreError(f"memory store {self.location}: deleted, but another process "
                             "kept the WAL from being emptied; delete again to erase it")

    def changes(self, namespace: str) -> tuple[int, int]:
        """See ``MemoryStore.changes``."""
        with self._db() as db:
            row = db.execute("SELECT adds, removals FROM memory_changes WHERE namespace = ?",
                             (namespace,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def vectors(self, namespace: str, embedder: str, after: int) -> list[MemoryRow]:
        """See ``MemoryStore.vectors``."""
        with self._db() as db:
            found = db.execute(
                "SELECT seq, id, kind, user_id, agent, source, vector FROM memories WHERE "
                "namespace = ? AND embedder = ? AND seq > ? ORDER BY seq",
                (namespace, embedder, after)).fetchall()
        return [MemoryRow(seq=seq, id=mid, namespace=namespace, text="", kind=kind,
                          user_id=user, agent=agent, source=source, embedder=embedder,
                          vector=_vector(blob))
                for seq, mid, kind, user, agent, source, blob in found]

    def stale(self, namespace: str, embedder: str, limit: int) -> list[MemoryRow]:
        """See ``MemoryStore.stale``."""
        with self._db() as db:
            found = db.execute("SELECT seq, id, text FROM memories WHERE namespace = ? AND "
                               "embedder != ? LIMIT ?", (namespace, embedder, limit)).fetchall()
        return [MemoryRow(seq=seq, id=mid, namespace=namespace, text=text)
                for seq, mid, text in found]

    def set_vectors(self, namespace: str, rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.set_vectors``."""
        with self._db(write=True) as db:
            db.executemany("UPDATE memories SET embedder = ?, vector = ? WHERE seq = ?",
                           [(r.embedder, _blob(r.vector), r.seq) for r in rows])
            self._bump(db, namespace, 0, 1)

    def file_digest(self, namespace: str, source: str) -> str | None:
        """See ``MemoryStore.file_digest``."""
        with self._db() as db:
            row = db.execute("SELECT digest FROM knowledge_files WHERE namespace = ? AND "
                             "source = ?", (namespace, source)).fetchone()
        return None if row is None else str(row[0])

    def set_file(self, namespace: str, source: str, digest: str,
                 rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.set_file``."""
        with self._db(write=True) as db:
            gone = db.execute("DELETE FROM memories WHERE namespace = ? AND kind = "
                              "'knowledge' AND source = ?", (namespace, source)).rowcount
            self._insert(db, rows)
            db.execute("INSERT OR REPLACE INTO knowledge_files VALUES (?, ?, ?, ?)",
                       (namespace, source, digest, time.time()))
            self._bump(db, namespace, 1, 1 if gone else 0)
