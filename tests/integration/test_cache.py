"""Result cache: keys, TTL with a fake clock, counters, persistence, the cache actor."""

from __future__ import annotations

import pytest

from ray_orch.store.cache import ResultCache, cache_key
from ray_orch.store.jsondir import JsonDirCheckpointStore
from ray_orch.store.sqlite import SQLITE_FILENAME, SQLiteCheckpointStore

KEY_FIELDS = {"model": "openai/gpt-4o-mini", "role": "Analyst", "goal": "Find trends",
              "description": "Analyse Q3", "context": "sales up 4%",
              "schema": {"type": "object", "properties": {"trend": {"type": "string"}}}}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cache_key_depends_on_every_field():
    base = cache_key(**KEY_FIELDS)
    assert base == cache_key(**KEY_FIELDS)
    assert len(base) == 64
    for field, other in [("model", "ollama/llama3"), ("role", "Writer"), ("goal", "x"),
                         ("description", "Analyse Q4"), ("context", ""), ("schema", None)]:
        assert cache_key(**{**KEY_FIELDS, field: other}) != base, field


def test_cache_key_ignores_schema_key_order():
    schema = {"properties": {"b": {"type": "string"}, "a": {"type": "integer"}}, "type": "object"}
    reordered = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert (cache_key(**{**KEY_FIELDS, "schema": schema})
            == cache_key(**{**KEY_FIELDS, "schema": reordered}))


def test_ttl_with_fake_clock():
    clock = Clock()
    cache = ResultCache(default_ttl=60, clock=clock)
    cache.put("k", {"raw": "answer"})
    cache.put("short", {"raw": "brief"}, ttl=5)
    clock.now += 5
    assert cache.get("short") is None
    assert cache.get("k") == {"raw": "answer"}
    clock.now += 54.9
    assert cache.get("k") == {"raw": "answer"}
    clock.now += 0.1
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["expired"], stats["size"]) == (2, 2, 2, 0)


def test_no_default_ttl_keeps_entries():
    clock = Clock()
    cache = ResultCache(default_ttl=None, clock=clock)
    cache.put("k", {"raw": "x"})
    clock.now += 10 * 365 * 86400
    assert cache.get("k") == {"raw": "x"}


def test_hits_and_misses_counted():
    cache = ResultCache()
    assert cache.get("k") is None
    cache.put("k", {"raw": "x"})
    assert cache.get("k") == {"raw": "x"}
    assert cache.get("k") == {"raw": "x"}
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["puts"]) == (2, 1, 1)
    assert stats["hit_rate"] == pytest.approx(2 / 3)


def test_values_are_copies():
    cache = ResultCache()
    value = {"raw": "x", "metadata": {"n": 1}}
    cache.put("k", value)
    value["metadata"]["n"] = 2
    got = cache.get("k")
    got["metadata"]["n"] = 3
    assert cache.get("k") == {"raw": "x", "metadata": {"n": 1}}


def test_secrets_are_scrubbed(monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-value-123")
    cache = ResultCache(secrets=["hunter22"])
    cache.put("k", {"raw": "acme-secret-value-123 hunter22", "metadata": {"api_key": "z"}})
    assert cache.get("k") == {"raw": "*** ***", "metadata": {"api_key": "***"}}


def test_memory_is_bounded_lru():
    cache = ResultCache(max_entries=2)
    cache.put("a", {"v": 1})
    cache.put("b", {"v": 2})
    cache.get("a")
    cache.put("c", {"v": 3})
    assert cache.get("b") is None
    assert cache.get("a") == {"v": 1} and cache.get("c") == {"v": 3}


def test_bad_ttl_refused():
    with pytest.raises(ValueError, match="ttl"):
        ResultCache().put("k", {}, ttl=0)


@pytest.mark.parametrize("store_cls", [SQLiteCheckpointStore, JsonDirCheckpointStore])
def test_persists_across_instances_through_the_store(store_cls, tmp_path):
    clock = Clock()
    first = ResultCache(default_ttl=60, store=store_cls(tmp_path), clock=clock)
    first.put("k", {"raw": "answer"})
    first.store.close()

    second = ResultCache(default_ttl=60, store=store_cls(tmp_path), clock=clock)
    assert second.get("k") == {"raw": "answer"}
    assert second.stats()["hits"] == 1
    clock.now += 61  # the store honours the TTL set by the first instance
    assert second.get("k") is None
    second.clear()
    clock.now -= 61
    assert second.get("k") is None  # clear() reached the store too
    second.store.close()


def test_corrupt_persisted_entry_is_a_miss(tmp_path):
    import sqlite3

    cache = ResultCache(store=SQLiteCheckpointStore(tmp_path))
    cache.put("k", {"raw": "answer"})
    cache.clear(persisted=False)
    raw = sqlite3.connect(tmp_path / SQLITE_FILENAME)
    with raw:
        raw.execute("UPDATE cache SET payload = replace(payload, 'answer', 'answex')")
    raw.close()
    assert cache.get("k") is None
    assert cache.stats()["corrupt"] == 1
    assert cache.store.cache_get("k", 0) is None  # deleted, not kept around
    cache.store.close()


def test_cache_actor_is_shared_and_persists(ray_session, tmp_path):
    from actors.cache_actor import NAME, NAMESPACE, get_cache_actor

    ray = ray_session
    handle = get_cache_actor(str(tmp_path))
    try:
        assert ray.get(handle.get.remote("k"), timeout=60) is None
        ray.get(handle.put.remote("k", {"raw": "answer"}, 60), timeout=60)
        again = get_cache_actor(str(tmp_path))
        assert ray.get(again.get.remote("k"), timeout=60) == {"raw": "answer"}
        stats = ray.get(again.stats.remote(), timeout=60)
        assert (stats["hits"], stats["misses"]) == (1, 1)
        assert ray.get_actor(NAME, namespace=NAMESPACE) is not None
        # Persisted in the directory's SQLite store, readable without the actor.
        with SQLiteCheckpointStore(tmp_path) as reader:
            assert reader.cache_get("k", 0) == {"raw": "answer"}
    finally:
        ray.kill(handle)
