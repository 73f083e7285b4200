"""Opening a run store from its spec: where a run's state lives.

A spec is a directory (the SQLite store's shorthand, as ``checkpoint_dir=`` gives it), a
``sqlite:///path/to/dir`` URL, or a ``postgresql://`` (``postgres://``) DSN.
:func:`store_spec` picks the spec a run uses: ``Process(store=...)``, else
``checkpoint_dir=``, else the ``RAY_ORCH_STORE`` environment variable.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ray_orch.core.errors import StoreError
from ray_orch.core.secrets import redact_dsn

__all__ = ["STORE_ENV", "is_postgres", "open_store", "opened_store", "store_spec"]

STORE_ENV = "RAY_ORCH_STORE"
"""The environment variable naming the default run store (a directory or a DSN)."""

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(spec: str) -> bool:
    """Whether ``spec`` names a PostgreSQL database.

    Example:
        >>> is_postgres("postgresql://db/runs"), is_postgres("./checkpoints")
        (True, False)
    """
    return spec.strip().lower().startswith(_POSTGRES_SCHEMES)


def store_spec(store: str | os.PathLike[str] | None = None,
               checkpoint_dir: str | os.PathLike[str] | None = None, *,
               env: dict[str, str] | None = None) -> str | None:
    """The spec a run's store is opened from: ``store``, else ``checkpoint_dir``, else
    ``$RAY_ORCH_STORE``; None when none is set (the run keeps no state).

    Raises:
        StoreError: both ``store`` and ``checkpoint_dir`` name different stores.

    Example:
        >>> store_spec(None, "ckpt", env={})
        'ckpt'
        >>> store_spec(None, None, env={"RAY_ORCH_STORE": "postgresql://db/x"})
        'postgresql://db/x'
    """
    chosen = os.fspath(store) if store else None
    given_dir = os.fspath(checkpoint_dir) if checkpoint_dir else None
    if chosen and given_dir and chosen != given_dir:
        raise StoreError(f"give store= or checkpoint_dir=, not both (store={redact_dsn(chosen)!r}, "
                         f"checkpoint_dir={given_dir!r})", store=redact_dsn(chosen))
    found = chosen or given_dir or (os.environ if env is None else env).get(STORE_ENV) or None
    return found.strip() if found else None


def open_store(spec: str | os.PathLike[str], *, check: bool = False) -> Any:
    """The :class:`~ray_orch.store.port.RunStore` a spec names.

    Args:
        spec: a directory, ``sqlite:///dir`` or a ``postgresql://`` DSN.
        check: connect now and check the store takes writes (before a run starts).

    Returns:
        A :class:`~ray_orch.store.sqlite.SQLiteRunStore` or
        :class:`~ray_orch.store.postgres.PostgresRunStore`.

    Raises:
        StoreError: an unknown scheme, a bad DSN, a refused directory, an unreachable,
            read-only or full store (the last three with ``check``, or on first use).

    Example:
        >>> import tempfile
        >>> open_store(tempfile.mkdtemp()).__class__.__name__
        'SQLiteRunStore'
        >>> open_store("mysql://db/x")
        Traceback (most recent call last):
        ...
        ray_orch.core.errors.StoreError: unknown run store 'mysql://db/x': give a directory, sqlite:///dir or postgresql://user@host/db
    """
    text = os.fspath(spec).strip()
    if not text:
        raise StoreError("the run store is empty: give a directory or a postgresql:// DSN")
    if is_postgres(text):
        from ray_orch.store.postgres import PostgresRunStore

        store: Any = PostgresRunStore(text)
    elif text.lower().startswith("sqlite://"):
        from ray_orch.store.sqlite import SQLiteRunStore

        store = SQLiteRunStore(text[len("sqlite://"):] or ".")
    elif "://" in text:
        raise StoreError(f"unknown run store {redact_dsn(text)!r}: give a directory, "
                         "sqlite:///dir or postgresql://user@host/db", store=redact_dsn(text))
    else:
        from ray_orch.store.sqlite import SQLiteRunStore

        store = SQLiteRunStore(text)
    if check:
        store.check()
    return store


_opened: dict[str, Any] = {}
_opened_guard = threading.Lock()


def opened_store(spec: str, *, check: bool = False) -> Any:
    """This process's one store of ``spec``, opened (and with ``check`` checked) the
    first time it is asked for, its connections kept: a driver's runs, and the store
    handles every run ships to a Supervisor and its members, do not open (and migrate)
    the store again each time."""
    with _opened_guard:
        store = _opened.get(spec)
        if store is None:
            store = _opened[spec] = open_store(spec, check=check)
        return store
