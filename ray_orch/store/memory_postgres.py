"""Memory in PostgreSQL: a pool of psycopg 3 connections, a schema version table.

The same tables as ``memory_sqlite`` (vectors as ``bytea``: the search runs in
``store.memory.VectorIndex``, no extension needed). Every member of a cluster, on any
node, reaches the same memories through the DSN. A deletion removes the rows, then
``VACUUM FULL`` rewrites the table and its TOAST table into new files, so the deleted
text and vectors are in no table file; PostgreSQL's write-ahead log keeps them until its
segments are recycled (the server's ``wal_keep_size`` / checkpoints decide when).
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from ray_orch.core.errors import StoreError
from ray_orch.core.secrets import scrub_secrets
from ray_orch.store.memory import COLUMNS, MemoryRow

__all__ = ["PostgresMemoryStore", "redact_dsn"]

SCHEMA_VERSION = 1

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ray_orch_memory_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ray_orch_memories (
        seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, namespace TEXT NOT NULL,
        kind TEXT NOT NULL, user_id TEXT, agent TEXT, source TEXT, text TEXT NOT NULL,
        metadata JSONB NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        embedder TEXT NOT NULL, vector BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ray_orch_memories_ns ON ray_orch_memories "
    "(namespace, embedder, seq)",
    "CREATE INDEX IF NOT EXISTS ray_orch_memories_user ON ray_orch_memories "
    "(namespace, user_id)",
    """CREATE TABLE IF NOT EXISTS ray_orch_memory_changes (
        namespace TEXT PRIMARY KEY, adds BIGINT NOT NULL, removals BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ray_orch_knowledge_files (
        namespace TEXT NOT NULL, source TEXT NOT NULL, digest TEXT NOT NULL,
        indexed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (namespace, source))""",
]


def redact_dsn(dsn: str) -> str:
    """A DSN without its password, for messages.

    Example:
        >>> redact_dsn("postgresql://me:s3cret@db:5432/x")
        'postgresql://me:***@db:5432/x'
    """
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))


class PostgresMemoryStore:
    """Memories in a PostgreSQL database; see the module docstring.

    Args:
        dsn: ``postgresql://user:password@host:port/database``.
        max_size: connections the pool may open in this process.

    Raises:
        StoreError: the database refuses the connection or has a newer schema.
    """

    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self.dsn = dsn
        self.location = redact_dsn(dsn)
        self._max_size = max_size
        self._pool: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"dsn": self.dsn, "max_size": self._max_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["dsn"], max_size=state["max_size"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"PostgresMemoryStore({self.location!r})"

    def _connections(self) -> Any:
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                pool = ConnectionPool(self.dsn, min_size=1, max_size=self._max_size,
                                      kwargs={"autocommit": True}, open=False)
                try:
                    pool.open(wait=True, timeout=30)
                    with pool.connection() as conn:
                        self._set_up(conn)
                except Exception as exc:
                    pool.close()
                    if isinstance(exc, StoreError):
                        raise
                    raise StoreError(f"memory store {self.location}: cannot connect "
                                     f"({type(exc).__name__}: {redact_dsn(str(exc))})") from None
                self._pool = pool
            return self._pool

    def _set_up(self, conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7283001)")  # one creator at a time
            for statement in _SCHEMA:
                conn.execute(statement)
            version = conn.execute("SELECT max(version) FROM ray_orch_memory_schema"
                                   ).fetchone()[0]
            if version is None:
                conn.execute("INSERT INTO ray_orch_memory_schema VALUES (%s)",
                             (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise StoreError(f"memory store {self.location} has schema version "
                                 f"{version}, newer than this ray-orch's {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close this process's pool (reopened on next use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _run(self, work: Any, *, transaction: bool = False) -> Any:
        import psycopg

        try:
            with self._connections().connection() as conn:
                if not transaction:
                    return work(conn)
                with conn.transaction():
                    return work(conn)
        except psycopg.Error as exc:
            raise StoreError(f"memory store {self.location}: {type(exc).__name__}: "
                             f"{redact_dsn(str(exc))}") from exc

    @staticmethod
    def _bump(conn: Any, namespace: str, adds: int, removals: int) -> None:
        conn.execute("INSERT INTO ray_orch_memory_changes VALUES (%s, %s, %s) ON CONFLICT "
                     "(namespace) DO UPDATE SET adds = ray_orch_memory_changes.adds + "
                     "excluded.adds, removals = ray_orch_memory_changes.removals + "
                     "excluded.removals", (namespace, adds, removals))

    @staticmethod
    def _insert(conn: Any, rows: list[MemoryRow]) -> None:
        import numpy as np

        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ray_orch_memories (id, namespace, kind, user_id, agent, source, "
                "text, metadata, created_at, embedder, vector) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [(r.id, r.namespace, r.kind, r.user_id, r.agent, r.source,
                  scrub_secrets(r.text), json.dumps(scrub_secrets(r.metadata), default=str),
                  r.created_at, r.embedder, np.asarray(r.vector, dtype=np.float32).tobytes())
                 for r in rows])

    def add(self, rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.add``."""
        if not rows:
            return

        def work(conn: Any) -> None:
            self._insert(conn, rows)
            for namespace in {r.namespace for r in rows}:
                self._bump(conn, namespace, 1, 0)
        self._run(work, transaction=True)

    _COLS = "seq, id, namespace, kind, user_id, agent, source, text, metadata, created_at"

    @staticmethod
    def _row(values: tuple[Any, ...]) -> MemoryRow:
        seq, mid, namespace, kind, user, agent, source, text, meta, created = values
        return MemoryRow(seq=seq, id=mid, namespace=namespace, kind=kind, user_id=user,
                         agent=agent, source=source, text=text,
                         metadata=meta if isinstance(meta, dict) else json.loads(meta),
                         created_at=created)

    def get(self, namespace: str, memory_id: str) -> MemoryRow | None:
        """See ``MemoryStore.get``."""
        row = self._run(lambda c: c.execute(
            f"SELECT {self._COLS} FROM ray_orch_memories WHERE namespace = %s AND id = %s",
            (namespace, memory_id)).fetchone())
        return None if row is None else self._row(row)

    def rows(self, namespace: str, seqs: list[int]) -> dict[int, MemoryRow]:
        """See ``MemoryStore.rows``."""
        if not seqs:
            return {}
        found = self._run(lambda c: c.execute(
            f"SELECT {self._COLS} FROM ray_orch_memories WHERE namespace = %s AND "
            "seq = ANY(%s)", (namespace, list(seqs))).fetchall())
        return {values[0]: self._row(values) for values in found}

    def delete(self, namespace: str, where: dict[str, Any]) -> int:
        """See ``MemoryStore.delete``."""
        clauses, values = ["namespace = %s"], [namespace]
        for column, value in where.items():
            if column not in COLUMNS:
                raise ValueError(f"cannot delete by {column!r}")
            clauses.append(f"{column} IS NOT DISTINCT FROM %s")
            values.append(value)

        def work(conn: Any) -> int:
            gone = conn.execute("DELETE FROM ray_orch_memories WHERE "
                                + " AND ".join(clauses), values).rowcount
            if gone:
                self._bump(conn, namespace, 0, 1)
            return int(gone)
        gone = self._run(work, transaction=True)
        if gone:
            self._erase()
        return int(gone)

    def clear(self, namespace: str) -> int:
        """See ``MemoryStore.clear``."""
        def work(conn: Any) -> int:
            gone = conn.execute("DELETE FROM ray_orch_memories WHERE namespace = %s",
                                (namespace,)).rowcount
            conn.execute("DELETE FROM ray_orch_knowledge_files WHERE namespace = %s",
                         (namespace,))
            self._bump(conn, namespace, 0, 1)
            return int(gone)
        gone = self._run(work, transaction=True)
        self._erase()
        return int(gone)

    def _erase(self) -> None:
        # VACUUM FULL writes the live rows into new files and drops the old ones (with
        # the deleted tuples); it runs outside a transaction (the pool is autocommit).
        self._run(lambda c: c.execute("VACUUM FULL ray_orch_memories"))

    def changes(self, namespace: str) -> tuple[int, int]:
        """See ``MemoryStore.changes``."""
        row = self._run(lambda c: c.execute(
            "SELECT adds, removals FROM ray_orch_memory_changes WHERE namespace = %s",
            (namespace,)).fetchone())
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def vectors(self, namespace: str, embedder: str, after: int) -> list[MemoryRow]:
        """See ``MemoryStore.vectors``."""
        import numpy as np

        found = self._run(lambda c: c.execute(
            "SELECT seq, id, kind, user_id, agent, source, vector FROM ray_orch_memories "
            "WHERE namespace = %s AND embedder = %s AND seq > %s ORDER BY seq",
            (namespace, embedder, after)).fetchall())
        return [MemoryRow(seq=seq, id=mid, namespace=namespace, text="", kind=kind,
                          user_id=user, agent=agent, source=source, embedder=embedder,
                          vector=np.frombuffer(bytes(blob), dtype=np.float32))
                for seq, mid, kind, user, agent, source, blob in found]

    def stale(self, namespace: str, embedder: str, limit: int) -> list[MemoryRow]:
        """See ``MemoryStore.stale``."""
        found = self._run(lambda c: c.execute(
            "SELECT seq, id, text FROM ray_orch_memories WHERE namespace = %s AND "
            "embedder != %s LIMIT %s", (namespace, embedder, limit)).fetchall())
        return [MemoryRow(seq=seq, id=mid, namespace=namespace, text=text)
                for seq, mid, text in found]

    def set_vectors(self, namespace: str, rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.set_vectors``."""
        import numpy as np

        def work(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany("UPDATE ray_orch_memories SET embedder = %s, vector = %s "
                                "WHERE seq = %s",
                                [(r.embedder, np.asarray(r.vector, dtype=np.float32).tobytes(),
                                  r.seq) for r in rows])
            self._bump(conn, namespace, 0, 1)
        self._run(work, transaction=True)

    def file_digest(self, namespace: str, source: str) -> str | None:
        """See ``MemoryStore.file_digest``."""
        row = self._run(lambda c: c.execute(
            "SELECT digest FROM ray_orch_knowledge_files WHERE namespace = %s AND "
            "source = %s", (namespace, source)).fetchone())
        return None if row is None else str(row[0])

    def set_file(self, namespace: str, source: str, digest: str,
                 rows: list[MemoryRow]) -> None:
        """See ``MemoryStore.set_file``."""
        def work(conn: Any) -> None:
            gone = conn.execute("DELETE FROM ray_orch_memories WHERE namespace = %s AND "
                                "kind = 'knowledge' AND source = %s",
                                (namespace, source)).rowcount
            self._insert(conn, rows)
            conn.execute("INSERT INTO ray_orch_knowledge_files VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT (namespace, source) DO UPDATE SET digest = "
                         "excluded.digest, indexed_at = excluded.indexed_at",
                         (namespace, source, digest, time.time()))
            self._bump(conn, namespace, 1, 1 if gone else 0)
        self._run(work, transaction=True)
