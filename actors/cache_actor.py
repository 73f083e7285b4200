"""``CacheActor``: the cluster-wide result cache, one named detached actor per cluster.

A thin shell over :class:`ray_orch.store.cache.ResultCache`; when given a checkpoint
directory it persists entries in that directory's SQLite store, so cached results
outlive the actor and the cluster.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from ray_orch.store.cache import ResultCache
from ray_orch.store.sqlite import SQLiteCheckpointStore

NAME = "rayorch-cache"
NAMESPACE = "ray_orch"


class CacheActor:
    """Holds one :class:`~ray_orch.store.cache.ResultCache`; every method is a short, sync body.

    Methods never await, so calls from one caller run in the order they were sent.

    Args:
        checkpoint_dir: directory of the SQLite store to persist entries in, or None.
        default_ttl: seconds an entry lives when ``put`` gives no ttl; None: forever.

    Example:
        >>> handle = get_cache_actor(None)  # doctest: +SKIP
        >>> ray.get(handle.put.remote("k", {"raw": "x"}, 60))  # doctest: +SKIP
        >>> ray.get(handle.get.remote("k"))  # doctest: +SKIP
        {'raw': 'x'}
    """

    def __init__(self, checkpoint_dir: str | None = None,
                 default_ttl: float | None = 3600.0) -> None:
        store = SQLiteCheckpointStore(checkpoint_dir) if checkpoint_dir else None
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

    async def attach_store(self, checkpoint_dir: str) -> bool:
        """Persist into ``checkpoint_dir`` from now on, if no store is attached yet.

        Returns:
            True when entries now persist in ``checkpoint_dir``; False when the actor
            already persists elsewhere (one actor serves the cluster: the first
            directory wins, entries stay shared in memory either way).
        """
        current = self._cache.store
        wanted = os.path.abspath(checkpoint_dir)
        if current is None:
            self._cache.store = SQLiteCheckpointStore(wanted)
            return True
        return isinstance(current, SQLiteCheckpointStore) and str(current.directory) == wanted


_remote_class: Any = None


def get_cache_actor(checkpoint_dir: str | None = None) -> Any:
    """The cluster's cache actor: get it, or create it (named, detached, no CPU).

    The caller must already be connected to Ray. The directory is made absolute here,
    in the caller's working directory; the actor is placed on the caller's node (soft
    affinity) so that a local directory means the same place. On a multi-node cluster
    use a directory on a shared filesystem.

    Args:
        checkpoint_dir: where to persist entries, or None for memory only. If the actor
            exists without a store, this attaches one (see ``CacheActor.attach_store``).

    Returns:
        The actor handle (``name="rayorch-cache"``, namespace ``"ray_orch"``).

    Example:
        >>> cache = get_cache_actor("checkpoints")  # doctest: +SKIP
        >>> ray.get(cache.stats.remote())["hits"]  # doctest: +SKIP
        0
    """
    global _remote_class
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if _remote_class is None:
        _remote_class = ray.remote(CacheActor)
    directory = os.path.abspath(checkpoint_dir) if checkpoint_dir else None
    options: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "get_if_exists": True,
                               "lifetime": "detached", "num_cpus": 0, "max_restarts": 3}
    if directory:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=True)
    handle = _remote_class.options(**options).remote(directory)
    if directory:
        # Fire and forget: a no-op when the actor was just created with this directory,
        # and ordered before any later call from this caller.
        handle.attach_store.remote(directory)
    return handle
