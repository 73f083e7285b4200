"""Result cache: keys that say what a task's answer depends on, and TTL bookkeeping.

:func:`cache_key` hashes everything that decides a task's answer (model, agent role and
goal, the rendered description, the context content, the output schema), so two tasks
share an entry only when an LLM would see the same request. :class:`ResultCache` holds
entries in memory with a TTL and, given a :class:`~ray_orch.store.checkpoint.CheckpointStore`,
persists them there so they outlive the process. It is plain Python; the cluster-wide
instance lives in ``actors.cache_actor.CacheActor``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ray_orch.core.errors import CheckpointCorruptError
from ray_orch.core.secrets import scrub_secrets
from ray_orch.store.checkpoint import CacheStore, canonical_json

__all__ = ["ResultCache", "cache_key"]

# Part of every key: bump it when what a cached value means changes, so old entries miss.
_KEY_VERSION = 1


def cache_key(*, model: str, role: str, goal: str, description: str, context: str,
              schema: dict[str, Any] | None) -> str:
    """The cache key of one task request: SHA-256 of the canonical JSON of its inputs.

    Args:
        model: the model string the request goes to (``"openai/gpt-4o-mini"``).
        role: the agent's role.
        goal: the agent's goal.
        description: the task's description after placeholders were filled in.
        context: the context text the prompt includes (upstream outputs as rendered).
        schema: the JSON schema of the structured output, or None for plain text.

    Returns:
        64 hex digits; the same inputs give the same key in every process.

    Raises:
        TypeError: ``schema`` holds a value JSON cannot represent.

    Example:
        >>> k = cache_key(model="m", role="r", goal="g", description="d", context="", schema=None)
        >>> len(k), k == cache_key(model="m", role="r", goal="g", description="d",
        ...                        context="", schema=None)
        (64, True)
    """
    request = {"v": _KEY_VERSION, "model": model, "role": role, "goal": goal,
               "description": description, "context": context, "schema": schema}
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


class ResultCache:
    """Task results by :func:`cache_key`, each kept for a TTL.

    ``get`` looks in memory, then in the store (and keeps what it finds there in
    memory); ``put`` writes both. Values are stored scrubbed of secrets
    (:func:`~ray_orch.store.checkpoint.scrub_secrets`) and handed out as copies, so a caller
    cannot change a cached entry. Expiry uses wall-clock time (``clock``) because it is
    persisted and compared in other processes.

    Args:
        default_ttl: seconds an entry lives when ``put`` gives no ttl; None: forever.
        store: where entries are persisted, or None for memory only.
        clock: returns the current Unix time; tests pass a fake.
        max_entries: entries kept in memory (least recently used dropped first); the
            store keeps them all.
        secrets: further strings to scrub from every value.

    Example:
        >>> now = [1000.0]
        >>> cache = ResultCache(default_ttl=60, clock=lambda: now[0])
        >>> cache.put("k", {"raw": "answer"})
        >>> cache.get("k")
        {'raw': 'answer'}
        >>> now[0] += 61
        >>> cache.get("k") is None
        True
        >>> cache.stats()["expired"]
        1
    """

    def __init__(self, *, default_ttl: float | None = 3600.0, store: CacheStore | None = None,
                 clock: Callable[[], float] = time.time, max_entries: int = 10_000,
                 secrets: Iterable[str] = ()) -> None:
        if max_entries < 1:
            raise ValueError(f"ResultCache max_entries must be at least 1, got {max_entries}")
        self.default_ttl = default_ttl
        self.store = store
        self._clock = clock
        self._max_entries = max_entries
        self._secrets = tuple(secrets)
        self._entries: OrderedDict[str, tuple[dict[str, Any], float | None]] = OrderedDict()
        self._counts = {"hits": 0, "misses": 0, "expired": 0, "corrupt": 0, "puts": 0}

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached value of ``key``, or None on a miss (absent, expired or corrupt).

        A corrupt persisted entry is deleted, counted in ``corrupt`` and treated as a miss:
        the task simply runs again.

        Args:
            key: a :func:`cache_key`.

        Returns:
            A copy of the value, or None.

        Example:
            >>> ResultCache().get("absent") is None
            True
        """
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            value, expires_at = entry
            if expires_at is None or expires_at > now:
                self._entries.move_to_end(key)
                self._counts["hits"] += 1
                return copy.deepcopy(value)
            del self._entries[key]
            self._counts["expired"] += 1
        # Another process sharing the store may hold a fresher entry than memory.
        found = self._load(key, now)
        self._counts["hits" if found is not None else "misses"] += 1
        return found

    def _load(self, key: str, now: float) -> dict[str, Any] | None:
        # Store hits are not kept in memory: the store alone knows when they expire.
        if self.store is None:
            return None
        try:
            return self.store.cache_get(key, now)
        except CheckpointCorruptError:
            self._counts["corrupt"] += 1
            # A damaged database file cannot delete either; the miss is what matters.
            with contextlib.suppress(CheckpointCorruptError):
                self.store.cache_delete(key)
            return None

    def put(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (default: ``default_ttl``).

        Args:
            key: a :func:`cache_key`.
            value: a JSON-like dict (``TaskOutput.model_dump(mode="json")``).
            ttl: seconds to keep it; ``None`` uses ``default_ttl``.

        Raises:
            ValueError: ``ttl`` is not positive.
            CheckpointCorruptError: the store's file is damaged.

        Example:
            >>> cache = ResultCache()
            >>> cache.put("k", {"raw": "x"}, ttl=10)
            >>> cache.stats()["size"]
            1
        """
        ttl = self.default_ttl if ttl is None else ttl
        if ttl is not None and ttl <= 0:
            raise ValueError(f"cache ttl must be a positive number of seconds, got {ttl}")
        expires_at = None if ttl is None else self._clock() + ttl
        clean = scrub_secrets(value, self._secrets)
        self._remember(key, clean, expires_at)
        self._counts["puts"] += 1
        if self.store is not None:
            self.store.cache_put(key, clean, expires_at)

    def _remember(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self, *, persisted: bool = True) -> None:
        """Forget every entry (also in the store unless ``persisted=False``); keep the counts.

        Example:
            >>> cache = ResultCache(); cache.put("k", {}); cache.clear(); cache.get("k")
        """
        self._entries.clear()
        if persisted and self.store is not None:
            self.store.cache_clear()

    def stats(self) -> dict[str, float]:
        """Counters: ``hits``, ``misses`` (expired and corrupt entries included),
        ``expired`` (found expired in memory), ``corrupt`` (persisted entries that failed
        their checksum), ``puts``, ``size`` (entries in memory) and ``hit_rate``.

        Example:
            >>> ResultCache().stats()["hits"]
            0
        """
        lookups = self._counts["hits"] + self._counts["misses"]
        return {**self._counts, "size": len(self._entries),
                "hit_rate": self._counts["hits"] / lookups if lookups else 0.0}
