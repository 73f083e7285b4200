"""The SQLite run store: one file, ``<dir>/ray_orch.sqlite``, in WAL mode with
``synchronous=FULL``; every write is its own transaction, durable when the call returns.

The directory is private: created 0700 (the file 0600), and refused when it belongs to
another user or others may write it (whoever can write the store could change what a
resumed run reuses). See :mod:`ray_orch.store.port` for the protocol and
:mod:`ray_orch.store.sql` for the statements it shares with PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ray_orch.core.errors import StoreError
from ray_orch.store.checkpoint import corrupt_error, make_private_dirs, open_private
from ray_orch.store.sql import Db, SQLRunStore, migrations

__all__ = ["SQLITE_FILENAME", "SQLiteCheckpointStore", "SQLiteRunStore", "check_private_dir",
           "connect_private"]

SQLITE_FILENAME = "ray_orch.sqlite"
_MIGRATIONS = migrations(real="REAL", blob="BLOB")
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_MIN_FREE_BYTES = 1 << 20


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT_CODES:
        return True
    # Locks, full disks and misuse are not corruption; a bare DatabaseError is.
    return type(exc) is sqlite3.DatabaseError


def connect_private(location: str, *, busy_ms: int,
                    set_up: Callable[[sqlite3.Connection], None],
                    pragmas: tuple[str, ...] = ()) -> sqlite3.Connection:
    """A connection to the SQLite file ``location``, created 0600 if missing (it holds
    prompts, outputs and what users said), in WAL mode with ``synchronous=FULL``, after
    ``set_up(conn)`` (schema, migrations) ran.

    Switching a new file to WAL beside another process doing the same fails at once
    with "database is locked": SQLite does not wait there as it does for writes. Every
    step is idempotent, so it is tried again until the busy timeout (``busy_ms``).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.sqlite")
        >>> conn = connect_private(path, busy_ms=1000, set_up=lambda c: None)
        >>> conn.execute("PRAGMA journal_mode").fetchone()[0], oct(os.stat(path).st_mode & 0o777)
        ('wal', '0o600')
    """
    with contextlib.suppress(FileExistsError):
        os.close(open_private(location))
    conn = sqlite3.connect(location, isolation_level=None, check_same_thread=False,
                           timeout=busy_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        for pragma in pragmas:
            conn.execute(pragma)
        deadline = time.monotonic() + busy_ms / 1000
        pause = 0.005
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                set_up(conn)
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
    except BaseException:
        conn.close()
        raise


def check_private_dir(directory: Path) -> None:
    """Refuse a store directory another user owns, or that group or others may write.

    Raises:
        StoreError: naming the directory, its owner and mode.

    Example:
        >>> import tempfile
        >>> check_private_dir(Path(tempfile.mkdtemp()))
    """
    try:
        info = directory.stat()
    except OSError as exc:
        raise StoreError(f"the run store directory {directory} cannot be read ({exc})",
                         store=str(directory)) from None
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"the run store {directory} is not a directory", store=str(directory))
    if info.st_uid != os.geteuid():
        raise StoreError(f"the run store directory {directory} belongs to uid {info.st_uid}, "
                         f"not to this user (uid {os.geteuid()}): refused, since its owner "
                         "could change what a resumed run reuses", store=str(directory))
    if info.st_mode & 0o022:
        raise StoreError(f"the run store directory {directory} may be written by "
                         f"{'group and others' if info.st_mode & 0o002 else 'its group'} "
                         f"(mode {stat.S_IMODE(info.st_mode):o}): refused; chmod 700 it",
                         store=str(directory))


class SQLiteRunStore(SQLRunStore):
    """The default run store: ``<directory>/ray_orch.sqlite``.

    Several processes may open the same directory: each process (and each fork) opens
    its own connection, and writers wait for each other (``busy_timeout``). The store
    pickles as its directory, so it can be handed to an actor on the same node (members
    on other nodes reach it through the runtime's store service).

    Args:
        directory: created (0700) if missing; refused if another user owns it or others
            may write it.
        busy_timeout_s: how long a write waits for another process's write.

    Raises:
        StoreError: the directory is refused or cannot be created.

    Example:
        >>> import tempfile
        >>> store = SQLiteRunStore(tempfile.mkdtemp())
        >>> store.begin_run("r1", "demo", "abc").status
        'running'
    """

    def __init__(self, directory: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.directory = Path(directory).absolute()
        try:
            make_private_dirs(self.directory)
        except OSError as exc:
            raise StoreError(f"the run store directory {self.directory} cannot be created "
                             f"({exc.strerror or exc})", store=str(self.directory)) from None
        check_private_dir(self.directory)
        self.spec = str(self.directory)
        self.location = str(self.directory / SQLITE_FILENAME)
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._migrations = _MIGRATIONS
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "busy_timeout_s": self._busy_timeout_ms / 1000}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], busy_timeout_s=state["busy_timeout_s"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SQLiteRunStore({str(self.directory)!r})"

    def close(self) -> None:
        """Close this process's connection (it is reopened on next use)."""
        with self._lock:
            self._drop_connection()

    def check(self) -> None:
        """Open the store now (schema created or migrated) and check there is room to
        write: the errors a run would otherwise meet mid-way.

        Raises:
            StoreError: unreadable, read-only or full.
        """
        with self._tx(write=True) as db:
            db.execute("UPDATE schema_version SET version = version")
        try:
            free = os.statvfs(self.directory)
        except OSError:
            return
        if free.f_bavail * free.f_frsize < _MIN_FREE_BYTES:
            raise StoreError(f"the run store {self.location} is on a full disk (less than "
                             "1 MiB free)", store=self.location)

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
        self._conn = connect_private(self.location, busy_ms=self._busy_timeout_ms,
                                     set_up=self._set_up)
        return self._conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._migrate(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False, run_id: str | None = None,
            task_id: str | None = None) -> Iterator[Db]:
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
                if isinstance(exc, sqlite3.OperationalError):
                    self._drop_connection()
                    raise StoreError(f"the run store {self.location} cannot be used: {exc}"
                                     f"{' (run ' + repr(run_id) + ')' if run_id else ''}",
                                     store=self.location, run_id=run_id) from exc
                raise
            except OSError as exc:
                raise StoreError(f"the run store {self.location} cannot be opened: "
                                 f"{exc.strerror or exc}", store=self.location,
                                 run_id=run_id) from exc


SQLiteCheckpointStore = SQLiteRunStore
"""The name this store had before it held everything a run persists."""
