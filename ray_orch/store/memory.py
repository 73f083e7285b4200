"""Memory in a store: the records, the ``MemoryStore`` protocol its backends implement, and
the in-process vector index that searches them.

A memory is a text with its vector, kept per namespace: what an agent remembered (kind
``"memory"``, tagged with the user, the agent, the run and the task) or a chunk of a
knowledge file (kind ``"knowledge"``, tagged with its source). Two backends implement the
protocol, one module each: ``memory_sqlite`` (a file beside the checkpoints' conventions:
0700 folder, 0600 file, WAL, ``secure_delete``) and ``memory_postgres`` (a pool of
psycopg 3 connections, a schema version table). Neither needs a vector extension: the
search runs here, in NumPy, over one matrix per namespace and embedder that each process
keeps and refreshes from the store's change counters (``VectorIndex``).

Every vector carries the tag of the embedder that made it; a search with another embedder
re-embeds the texts first (``Memory`` does it), so vectors of two models never mix.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["COLUMNS", "MemoryItem", "MemoryRow", "MemoryStore", "VectorIndex",
           "one_blas_thread"]

COLUMNS = ("id", "user_id", "agent", "kind", "source")
"""Columns a deletion may filter on (``MemoryStore.delete``'s ``where``)."""


@dataclass(kw_only=True)
class MemoryItem:
    """One memory as ``Memory.search`` and ``Memory.get`` return it.

    Example:
        >>> MemoryItem(id="m1", text="The user prefers tea", score=0.71).text
        'The user prefers tea'
    """

    id: str
    """The memory's id (``Memory.add`` returned it)."""
    text: str
    """What was remembered (or the knowledge chunk's text)."""
    score: float | None = None
    """Cosine similarity to the query (1 is the same meaning); None from ``get``."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """What it is about: ``user_id``, ``agent``, ``kind``, and the caller's own keys (a
    task's output: ``run_id``, ``task``; a knowledge chunk: ``source``, ``chunk``)."""
    created_at: float = 0.0
    """When it was added (seconds since the epoch)."""


@dataclass(kw_only=True)
class MemoryRow:
    """One row of a memory store (what the backends read and write)."""

    id: str
    """A unique id (hex)."""
    namespace: str
    """The ``Memory``'s namespace: memories of two namespaces never meet."""
    text: str
    """The text."""
    kind: str = "memory"
    """``"memory"`` or ``"knowledge"``."""
    user_id: str | None = None
    """Whose memory it is (None: nobody's; a search for a user never sees another's)."""
    agent: str | None = None
    """The agent that remembered it."""
    source: str | None = None
    """A knowledge chunk's file (absolute path)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The caller's metadata (JSON)."""
    created_at: float = 0.0
    """Seconds since the epoch."""
    embedder: str = ""
    """The tag of the embedder that made ``vector``."""
    vector: Any = None
    """A unit-length float32 NumPy vector."""
    seq: int = 0
    """The store's sequence number (set by the store)."""


class MemoryStore(Protocol):
    """What a memory backend does. Writes are durable when the call returns; reads see
    every other process's writes."""

    location: str
    """The store as a message names it (a path, or a DSN without its password)."""

    def add(self, rows: list[MemoryRow]) -> None:
        """Insert rows (one transaction), their text and metadata scrubbed of secrets
        (``core.secrets``); a row whose id is already kept is left out."""

    def get(self, namespace: str, memory_id: str) -> MemoryRow | None:
        """One row by id (without its vector)."""

    def rows(self, namespace: str, seqs: list[int]) -> dict[int, MemoryRow]:
        """Rows by sequence number (without vectors)."""

    def delete(self, namespace: str, where: dict[str, Any]) -> int:
        """Delete the rows whose columns (``COLUMNS``) equal ``where``'s values (None
        matches NULL), then erase them from the store's files. Returns how many went."""

    def clear(self, namespace: str) -> int:
        """Delete every row of the namespace (and erase them). Returns how many went."""

    def changes(self, namespace: str) -> tuple[int, int]:
        """The namespace's change counters: ``(adds, removals)``; a re-embedding counts
        as a removal (the index reloads)."""

    def vectors(self, namespace: str, embedder: str, after: int) -> list[MemoryRow]:
        """Rows made by ``embedder`` with ``seq > after`` (with vectors, without text)."""

    def stale(self, namespace: str, embedder: str, limit: int) -> list[MemoryRow]:
        """Up to ``limit`` rows whose vectors another embedder made (with text)."""

    def set_vectors(self, namespace: str, rows: list[MemoryRow]) -> None:
        """Replace the vectors (and embedder tags) of rows, by seq."""

    def file_digest(self, namespace: str, source: str) -> str | None:
        """The digest a knowledge file was indexed at, or None."""

    def set_file(self, namespace: str, source: str, digest: str,
                 rows: list[MemoryRow]) -> None:
        """Replace a knowledge file's chunks and record its digest (one transaction)."""

    def close(self) -> None:
        """Release connections (they are opened again on next use)."""


_blas: Any = None


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (``threadpoolctl``; ~10 us to enter).

    Vector search and encoding are small products repeated often: BLAS's default of a
    thread per core makes them fight every other process for the cores (on this
    project's loaded 2-core machine a short text took 0.5-1.6 s to encode instead of
    40 ms). Without threadpoolctl installed, BLAS keeps its own threads.
    """
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas = False
        else:
            _blas = ThreadpoolController()
    if _blas is False:
        import contextlib

        return contextlib.nullcontext()
    return _blas.limit(limits=1, user_api="blas")


def _codes(values: list[Any], table: dict[Any, int]) -> Any:
    import numpy as np

    return np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int32,
                       count=len(values))


class VectorIndex:
    """One namespace's vectors of one embedder, as a matrix kept in this process.

    It loads what the store holds on first use, then only what was added since (the
    store's change counters say); a removal or a re-embedding reloads it. A search is one
    matrix-vector product over every row (or over the rows of one user when they are few),
    filtered by integer codes of user, agent, kind and source.

    Example:
        >>> import numpy as np
        >>> index = VectorIndex(dim=2)
        >>> index.extend([MemoryRow(id="a", namespace="n", text="", user_id="u", seq=1,
        ...                         vector=np.array([1.0, 0.0], dtype=np.float32))])
        >>> [(seq, round(score, 2)) for seq, score in index.search(
        ...     np.array([1.0, 0.0], dtype=np.float32), user_id="u", limit=3)]
        [(1, 1.0)]
    """

    def __init__(self, *, dim: int) -> None:
        import numpy as np

        self.dim = dim
        self.lock = threading.Lock()
        self.seen: tuple[int, int] | None = None
        self.last_seq = 0
        self.size = 0
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.seqs = np.zeros(0, dtype=np.int64)
        self.columns = {name: np.zeros(0, dtype=np.int32)
                        for name in ("user_id", "agent", "kind", "source")}
        self.tables: dict[str, dict[Any, int]] = {name: {} for name in self.columns}

    def reset(self) -> None:
        """Forget every row (the next refresh loads them again)."""
        self.__init__(dim=self.dim)  # type: ignore[misc]

    def extend(self, rows: list[MemoryRow]) -> None:
        """Append rows (their ``seq`` and ``vector`` set)."""
        import numpy as np

        if not rows:
            return
        need = self.size + len(rows)
        if need > len(self.matrix):  # grown by doubling: appends are amortised O(1)
            grown = np.zeros((max(need, 2 * len(self.matrix), 64), self.dim),
                             dtype=np.float32)
            grown[:self.size] = self.matrix[:self.size]
            self.matrix = grown
        self.matrix[self.size:need] = np.stack([np.asarray(r.vector, dtype=np.float32)
                                                for r in rows])
        self.seqs = np.concatenate([self.seqs, [r.seq for r in rows]]).astype(np.int64)
        for name, column in self.columns.items():
            added = _codes([getattr(r, name) for r in rows], self.tables[name])
            self.columns[name] = np.concatenate([column, added])
        self.size = need
        self.last_seq = max(self.last_seq, max(r.seq for r in rows))

    def search(self, query: Any, *, user_id: str | None, agent: str | None = None,
               kind: str = "memory", sources: list[str] | None = None,
               limit: int = 5) -> list[tuple[int, float]]:
        """The best ``limit`` rows for a unit query vector: ``[(seq, score)]``, best first.

        Args:
            query: the query's unit vector.
            user_id: only this user's rows (None: only rows of no user).
            agent: only this agent's rows (None: any agent's).
            kind: ``"memory"`` or ``"knowledge"``.
            sources: for knowledge: only chunks of these files (None: any).
            limit: how many at most.
        """
        import numpy as np

        if self.size == 0 or limit <= 0:
            return []
        mask = self._equals("kind", kind)
        if kind == "memory":
            mask &= self._equals("user_id", user_id)
        if agent is not None:
            mask &= self._equals("agent", agent)
        if sources is not None:
            codes = [self.tables["source"].get(s) for s in sources]
            mask &= np.isin(self.columns["source"], [c for c in codes if c is not None])
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return []
        with one_blas_thread():
            if len(rows) * 4 < self.size:  # few rows: gather them rather than score all
                scores = self.matrix[rows] @ query
            else:
                scores = (self.matrix[:self.size] @ query)[rows]
        k = min(limit, len(rows))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(self.seqs[rows[i]]), float(scores[i])) for i in best]

    def _equals(self, name: str, value: Any) -> Any:
        import numpy as np

        code = self.tables[name].get(value)
        if code is None:
            return np.zeros(self.size, dtype=bool)
        return self.columns[name][:self.size] == code
