"""``CacheActor``: the cluster-wide result cache, one named detached actor per cluster.

A thin shell over :class:`ray_orch.store.cache.ResultCache`; when given a run store
handle it persists entries there (its ``cache`` table), so cached results outlive the
actor and the cluster.
"""

from __future__ import annotations

from typing import Any

import ray

from ray_orch.store.cache import ResultCache

NAME = "rayorch-cache"
NAMESPACE = "ray_orch"


class CacheActor:
    """Holds one :class:`~ray_orch.store.cache.ResultCache`; every method is a short, sync body.

    Methods never await, so calls from one caller run in the order they were sent.

    Args:
        store: the run store handle to persist entries in (``RunStore``), or None.
        default_ttl: seconds an entry lives when ``put`` gives no ttl; None: forever.

    Example:
        >>> handle = get_cache_actor(None)  # doctest: +SKIP
        >>> ray.get(handle.put.remote("k", {"raw": "x"}, 60))  # doctest: +SKIP
        >>> ray.get(handle.get.remote("k"))  # doctest: +SKIP
        {'raw': 'x'}
    """

    def __init__(self, store: Any = None, default_ttl: float | None = 3600.0) -> None:
        self._cache = ResultCache(default_ttl=default_ttl, store=store)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached value of ``key`` or None (see ``ResultCache.get``)."""
        return self._cache.get(key)

    async def put(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (see ``ResultCache.put``)."""
        self._cache.put(key, value, ttl)

    async def stats(self) -> dict[str, float]:
        """Hit / miss / expiry counters (see ``ResultCache.stats``)."""
        return self._cache.stats()

    async def clear(self, persisted: bool = True) -> None:
        """Forget every entry, in the store too unless ``persisted=False``."""
        self._cache.clear(persisted=persisted)

    async def attach_store(self, store: Any) -> bool:
        """Persist into ``store`` from now on, if no store is attached yet.

        Returns:
            True when entries now persist in ``store``; False when the actor already
            persists elsewhere (one actor serves the cluster: the first store wins,
            entries stay shared in memory either way).
        """
        current = self._cache.store
        if current is None:
            self._cache.store = store
            return True
        return getattr(current, "spec", None) == store.spec


_remote_class: Any = None


def get_cache_actor(store: Any = None) -> Any:
    """The cluster's cache actor: get it, or create it (named, detached, no CPU).

    The caller must already be connected to Ray. The store is a run store handle, which
    reaches the same data from any node (``actors.store_service.route``), so the actor
    may run anywhere.

    Args:
        store: where to persist entries, or None for memory only. If the actor exists
            without a store, this attaches one (see ``CacheActor.attach_store``).

    Returns:
        The actor handle (``name="rayorch-cache"``, namespace ``"ray_orch"``).

    Example:
        >>> cache = get_cache_actor(open_store("checkpoints"))  # doctest: +SKIP
        >>> ray.get(cache.stats.remote())["hits"]  # doctest: +SKIP
        0
    """
    global _remote_class
    if _remote_class is None:
        _remote_class = ray.remote(CacheActor)
    options: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "get_if_exists": True,
                               "lifetime": "detached", "num_cpus": 0, "max_restarts": 3}
    handle = _remote_class.options(**options).remote(store)
    if store is not None:
        # Fire and forget: a no-op when the actor was just created with this store,
        # and ordered before any later call from this caller.
        handle.attach_store.remote(store)
    return handle
