"""The PostgreSQL run store: the same tables as SQLite, in a database that every node of a
cluster reaches over the network (``store="postgresql://user:pw@host/db"``).

psycopg 3 with one ``psycopg_pool.ConnectionPool`` per process and DSN, opened on first
use (so the store pickles as its DSN and reconnects in whichever actor receives it).
ray-orch creates and migrates the schema itself (``schema_version`` table, under an
advisory lock so that concurrent first users do not race). Every call is one
transaction; starting a run takes a per-run advisory lock, so two drivers cannot both
start (or resume) the same run id and lose one's update. The DSN's password never
appears in an error, a log line or ``repr``: the store is shown as :attr:`location`,
its password replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

from ray_orch.core.errors import StoreError
from ray_orch.core.secrets import dsn_password, redact_dsn
from ray_orch.store.sql import Db, SQLRunStore, migrations

__all__ = ["PostgresRunStore"]

_MIGRATIONS = migrations(real="DOUBLE PRECISION", blob="BYTEA")
_MIGRATION_LOCK = 0x7261796F  # "rayo": one advisory lock id for schema changes
_pools: dict[tuple[str, int], Any] = {}
_pools_guard = threading.Lock()


class _Scrubbed(logging.Filter):
    """Drops a password from psycopg's own log records (its pool logs connection errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(s in text for s in self.secrets):
                for secret in self.secrets:
                    text = text.replace(secret, "***")
                record.msg, record.args = text, ()
        return True


_log_filter = _Scrubbed()
logging.getLogger("psycopg").addFilter(_log_filter)
logging.getLogger("psycopg.pool").addFilter(_log_filter)


class _Cursorless:
    """A psycopg connection as the shared statements use it (``?`` placeholders)."""

    _converted: dict[str, str] = {}

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        text = self._converted.get(sql)
        if text is None:
            text = self._converted[sql] = sql.replace("?", "%s")
        return self.conn.execute(text, params)


class PostgresRunStore(SQLRunStore):
    """A run store in PostgreSQL.

    Args:
        dsn: ``postgresql://user:password@host:port/database`` (or libpq's
            ``key=value`` form).
        max_connections: the pool's size in each process.
        connect_timeout_s: how long opening a connection may take.

    Raises:
        StoreError: the DSN cannot be parsed (raised here); the server cannot be
            reached or refuses the login (raised on first use, or by :meth:`check`).

    Example:
        >>> PostgresRunStore("postgresql://app:s3cret@127.0.0.1:1/runs").location
        'postgresql://app:***@127.0.0.1:1/runs'
    """

    def __init__(self, dsn: str, *, max_connections: int = 8,
                 connect_timeout_s: float = 10.0) -> None:
        import psycopg

        self.spec = dsn
        self.location = redact_dsn(dsn)
        self._secrets = _secrets_of(dsn)
        _log_filter.secrets.update(self._secrets)
        self._migrations = _MIGRATIONS
        self._max = max_connections
        self._timeout = connect_timeout_s
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StoreError(f"the run store DSN {self.location} is not a valid PostgreSQL "
                             f"connection string: {self._scrub(str(exc))}",
                             store=self.location) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"dsn": self.spec, "max_connections": self._max,
                "connect_timeout_s": self._timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["dsn"], max_connections=state["max_connections"],  # type: ignore[misc]
                      connect_timeout_s=state["connect_timeout_s"])

    def __repr__(self) -> str:
        return f"PostgresRunStore({self.location!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_dsn(text)

    def _error(self, exc: BaseException, doing: str, run_id: str | None = None) -> StoreError:
        why = self._scrub(str(exc).strip()) or type(exc).__name__
        return StoreError(f"the run store {self.location} {doing}: {why}",
                          store=self.location, run_id=run_id)

    def close(self) -> None:
        """Close this process's pool of this DSN (it is reopened on next use)."""
        with _pools_guard:
            pool = _pools.pop((self.spec, os.getpid()), None)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close()

    def check(self) -> None:
        """Connect now (schema created or migrated) and check the database takes writes.

        Raises:
            StoreError: unreachable, login refused, or read-only.
        """
        with self._tx() as db:
            row = db.execute("SELECT current_setting('transaction_read_only')").fetchone()
        if row and row[0] == "on":
            raise StoreError(f"the run store {self.location} is read-only (a standby, or "
                             "default_transaction_read_only is on)", store=self.location)

    def _pool(self) -> Any:
        key = (self.spec, os.getpid())
        pool = _pools.get(key)
        if pool is not None:
            return pool
        with _pools_guard:
            pool = _pools.get(key)
            if pool is None:
                self._first_connection()
                from psycopg_pool import ConnectionPool

                pool = ConnectionPool(self.spec, min_size=1, max_size=self._max, open=False,
                                      name="ray-orch-store", check=ConnectionPool.check_connection,
                                      kwargs={"connect_timeout": int(self._timeout)})
                try:
                    pool.open(wait=True, timeout=self._timeout)
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        pool.close()
                    raise self._error(exc, "cannot be reached") from None
                _pools[key] = pool
        return pool

    def _first_connection(self) -> None:
        """Connect once directly (a precise error: refused, unknown host, bad login) and
        bring the schema up to date."""
        import psycopg

        try:
            conn = psycopg.connect(self.spec, connect_timeout=int(self._timeout))
        except psycopg.Error as exc:
            raise self._error(exc, "cannot be reached") from None
        try:
            with conn.transaction():
                db = _Cursorless(conn)
                db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                self._migrate(db)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot create its tables") from None
        finally:
            conn.close()

    def _lock_run(self, db: Db, run_id: str) -> Any:
        # Serialises starting the same run id: the row may not exist yet to lock.
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (run_id,))
        return super()._lock_run(db, run_id)

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False, run_id: str | None = None,
            task_id: str | None = None) -> Iterator[Db]:
        import psycopg

        pool = self._pool()
        try:
            with pool.connection(timeout=self._timeout) as conn, conn.transaction():
                yield _Cursorless(conn)
        except (psycopg.OperationalError, psycopg.InternalError) as exc:
            raise self._error(exc, "failed" + (f" (run {run_id!r})" if run_id else ""),
                              run_id) from None


def _secrets_of(dsn: str) -> set[str]:
    password = dsn_password(dsn)
    if not password:
        return set()
    return {password, urllib.parse.unquote(password)} - {""}
