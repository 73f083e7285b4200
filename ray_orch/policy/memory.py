"""``Memory``: what agents remember, by user, kept in a store and recalled by meaning.

A ``Memory`` is a small handle (it pickles as its settings, so it travels to every member
of a run): where the memories are (a folder, or a PostgreSQL DSN), a namespace, and the
embedder. ``add`` embeds a text and keeps it with its user, agent and metadata; ``search``
embeds the query and returns the closest memories of that user, best first. The vector
search runs in this process over a matrix kept per namespace and embedder
(``store.memory.VectorIndex``), refreshed from the store's change counters, so another
process's additions are seen at its next search.

Where: ``Memory()`` keeps memories in ``$RAY_ORCH_MEMORY_DIR``, else in
``~/.ray-orch/memory`` (``memory.sqlite``: 0700 folder, 0600 file). ``Memory("dir")``
names another folder; ``Memory("postgresql://...")`` a database every node can reach.

Users never mix: a search for ``user_id="u1"`` sees only u1's memories, and one with no
user sees only memories of no user. ``delete(user_id=...)`` erases a user's memories from
the store's files (see the backends), and says how many went.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.model.embed import embedder_for
from ray_orch.store.memory import MemoryItem, MemoryRow, MemoryStore, VectorIndex

__all__ = ["MEMORY_DIR_ENV", "Memory", "MemoryItem", "default_memory_dir"]

MEMORY_DIR_ENV = "RAY_ORCH_MEMORY_DIR"
_REEMBED_BATCH = 256

_lock = threading.Lock()
_stores: dict[str, MemoryStore] = {}
_indexes: dict[tuple[str, str, str], VectorIndex] = {}


def default_memory_dir() -> Path:
    """Where ``Memory()`` keeps memories: ``$RAY_ORCH_MEMORY_DIR``, else
    ``~/.ray-orch/memory``."""
    configured = os.environ.get(MEMORY_DIR_ENV)
    return Path(configured).expanduser() if configured else \
        Path.home() / ".ray-orch" / "memory"


def _open(location: str) -> MemoryStore:
    """This process's store for ``location`` (one per location: one connection, one
    index cache)."""
    with _lock:
        store = _stores.get(location)
        if store is None:
            if location.startswith(("postgresql://", "postgres://")):
                from ray_orch.store.memory_postgres import PostgresMemoryStore

                store = PostgresMemoryStore(location)
            else:
                from ray_orch.store.memory_sqlite import SQLiteMemoryStore

                store = SQLiteMemoryStore(location)
            _stores[location] = store
        return store


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidTaskFieldError(f"Memory: {what} must be a non-empty string, not "
                                    f"{value!r}", field=what)
    return value


def _optional(value: Any, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidTaskFieldError(f"Memory: {what} must be a non-empty string or None, "
                                    f"not {value!r}", field=what)
    return value  # type: ignore[no-any-return]


class Memory:
    """Memories kept in a store and recalled by meaning.

    Args:
        store: None (``$RAY_ORCH_MEMORY_DIR`` or ``~/.ray-orch/memory``), a folder, or a
            ``postgresql://`` DSN.
        namespace: memories of two namespaces never meet.
        embedder: None (the offline all-MiniLM-L6-v2), a litellm embedding model
            (``"text-embedding-3-small"``), or CrewAI's / PraisonAI's ``{"provider":
            ..., "config": {"model": ...}}``.

    Raises:
        InvalidTaskFieldError: a store, namespace or embedder of the wrong kind.

    Example:
        >>> import tempfile
        >>> memory = Memory(tempfile.mkdtemp())
        >>> _ = memory.add("Ana prefers green tea in the morning", user_id="ana")
        >>> _ = memory.add("The office wifi password rotates monthly", user_id="ana")
        >>> memory.search("what does Ana like to drink?", user_id="ana", limit=1)[0].text
        'Ana prefers green tea in the morning'
        >>> memory.search("what does Ana like to drink?", user_id="bob")
        []
        >>> memory.delete(user_id="ana")
        2
    """

    def __init__(self, store: str | os.PathLike[str] | None = None, *positional: Any,
                 namespace: str = "default", embedder: Any = None) -> None:
        if positional:
            raise InvalidTaskFieldError("Memory: only store may be given by position; pass "
                                        "namespace= and embedder= by keyword",
                                        field="namespace")
        if store is not None and not isinstance(store, (str, os.PathLike)):
            raise InvalidTaskFieldError(f"Memory: store must be None, a folder or a "
                                        f"postgresql:// DSN, not {store!r}", field="store")
        self.namespace = _text(namespace, "namespace")
        location = os.fspath(store) if store is not None else str(default_memory_dir())
        if not location.startswith(("postgresql://", "postgres://")):
            location = str(Path(location).expanduser().absolute())
        self.location = location
        self.embedder_spec = embedder
        self.embedder = embedder_for(embedder)

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "namespace": self.namespace,
                "embedder": self.embedder_spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], namespace=state["namespace"],  # type: ignore[misc]
                      embedder=state["embedder"])

    def __repr__(self) -> str:
        from ray_orch.store.memory_postgres import redact_dsn

        return (f"Memory({redact_dsn(self.location)!r}, namespace={self.namespace!r}, "
                f"embedder={self.embedder!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Memory) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.location, self.namespace))

    @property
    def store(self) -> MemoryStore:
        """This process's backend for the location (opened on first use)."""
        return _open(self.location)

    # -- writing -----------------------------------------------------------------------

    def add(self, text: str, *, user_id: str | None = None, agent: str | None = None,
            metadata: dict[str, Any] | None = None) -> str:
        """Remember ``text`` for ``user_id``.

        Args:
            text: what to remember.
            user_id: whose memory it is (None: nobody's).
            agent: the agent that remembers it.
            metadata: JSON-able keys kept with it (returned by ``search``).

        Returns:
            The new memory's id.
        """
        return self.add_many([text], user_id=user_id, agent=agent, metadata=metadata)[0]

    def add_many(self, texts: list[str] | list[dict[str, Any]], *,
                 user_id: str | None = None, agent: str | None = None,
                 metadata: dict[str, Any] | None = None) -> list[str]:
        """Remember many texts at once (embedded in batches, one transaction).

        Args:
            texts: strings, or dicts ``{"text": ..., "user_id": ..., "agent": ...,
                "metadata": {...}}`` whose keys win over the keyword arguments (and an
                ``"id"``: a text added again under the same id is kept once).
            user_id, agent, metadata: for every text that does not say.

        Returns:
            The new ids, in order.
        """
        items = [t if isinstance(t, dict) else {"text": t} for t in texts]
        rows = []
        now = time.time()
        for item in items:
            meta = item.get("metadata", metadata)
            if meta is not None and not isinstance(meta, dict):
                raise InvalidTaskFieldError(f"Memory: metadata must be a dict, not {meta!r}",
                                            field="metadata")
            rows.append(MemoryRow(
                id=_optional(item.get("id"), "id") or uuid.uuid4().hex,
                namespace=self.namespace,
                text=_text(item.get("text"), "text"),
                user_id=_optional(item.get("user_id", user_id), "user_id"),
                agent=_optional(item.get("agent", agent), "agent"),
                metadata=dict(meta or {}), created_at=now))
        self._write(rows)
        return [r.id for r in rows]

    def _write(self, rows: list[MemoryRow]) -> None:
        if not rows:
            return
        tag = self.embedder.tag
        vectors = self.embedder.embed([r.text for r in rows])
        for row, vector in zip(rows, vectors, strict=True):
            row.embedder, row.vector = tag, vector
        self.store.add(rows)

    def delete(self, id: str | None = None, *, user_id: str | None = None,
               agent: str | None = None) -> int:
        """Erase memories: one by id, or every memory of a user (and/or an agent).

        The text and the vector leave the store's files (SQLite: zeroed and the WAL
        emptied; PostgreSQL: the table rewritten).

        Args:
            id: one memory.
            user_id: every memory of this user (with ``id``: only if it is theirs).
            agent: every memory this agent made (with ``user_id``: for that user).

        Returns:
            How many memories went.

        Raises:
            InvalidTaskFieldError: none of them given (``clear()`` empties the namespace).
        """
        where = {key: value for key, value in (("id", id), ("user_id", user_id),
                                               ("agent", agent)) if value is not None}
        if not where:
            raise InvalidTaskFieldError("Memory.delete: give id=, user_id= or agent= "
                                        "(clear() deletes everything)", field="id")
        return self.store.delete(self.namespace, where)

    def clear(self) -> int:
        """Erase every memory and knowledge chunk of this namespace; returns how many."""
        return self.store.clear(self.namespace)

    # -- reading -----------------------------------------------------------------------

    def get(self, id: str) -> MemoryItem | None:
        """One memory by id, or None."""
        row = self.store.get(self.namespace, id)
        return None if row is None else _item(row, None)

    def search(self, query: str, *, user_id: str | None = None, agent: str | None = None,
               limit: int = 5) -> list[MemoryItem]:
        """The memories of ``user_id`` closest in meaning to ``query``, best first.

        Args:
            query: what to look for.
            user_id: whose memories (None: only memories of no user).
            agent: only this agent's (None: any agent's).
            limit: how many at most.

        Returns:
            ``MemoryItem``s with ``score`` (cosine similarity), best first.
        """
        return self.find(query, user_id=user_id, agent=agent, limit=limit)

    def find(self, query: str, *, user_id: str | None = None, agent: str | None = None,
             limit: int = 5, kind: str = "memory",
             sources: list[str] | None = None) -> list[MemoryItem]:
        """``search`` over memories or knowledge chunks (``kind="knowledge"``, of the
        files in ``sources``)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidTaskFieldError(f"Memory.search: limit must be an int >= 0, not "
                                        f"{limit!r}", field="limit")
        _text(query, "query")
        index = self.index()
        vector = self.embedder.embed([query])[0]
        with index.lock:
            found = index.search(vector, user_id=user_id, agent=agent, kind=kind,
                                 sources=sources, limit=limit)
        rows = self.store.rows(self.namespace, [seq for seq, _ in found])
        return [_item(rows[seq], score) for seq, score in found if seq in rows]

    def index(self) -> VectorIndex:
        """This process's vector index of the namespace, brought up to date (texts made
        by another embedder are re-embedded first)."""
        tag = self.embedder.tag
        key = (self.location, self.namespace, tag)
        with _lock:
            index = _indexes.get(key)
        store = self.store
        changes = store.changes(self.namespace)
        if index is not None and index.seen == changes:
            return index
        self._reembed(tag)
        changes = store.changes(self.namespace)
        if index is None:
            probe = self.embedder.embed(["dimension"])
            index = VectorIndex(dim=int(probe.shape[1]))
            with _lock:
                index = _indexes.setdefault(key, index)
        with index.lock:
            if index.seen is not None and index.seen[1] != changes[1]:
                index.reset()  # something went: start again
            index.extend(store.vectors(self.namespace, tag, index.last_seq))
            index.seen = changes
        return index

    def _reembed(self, tag: str) -> None:
        while True:
            stale = self.store.stale(self.namespace, tag, _REEMBED_BATCH)
            if not stale:
                return
            vectors = self.embedder.embed([r.text for r in stale])
            for row, vector in zip(stale, vectors, strict=True):
                row.embedder, row.vector = tag, vector
            self.store.set_vectors(self.namespace, stale)


def _item(row: MemoryRow, score: float | None) -> MemoryItem:
    meta = {**row.metadata, "user_id": row.user_id, "agent": row.agent, "kind": row.kind}
    if row.source is not None:
        meta["source"] = row.source
    return MemoryItem(id=row.id, text=row.text, score=score, metadata=meta,
                      created_at=row.created_at)
