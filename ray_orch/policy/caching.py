"""How tasks use the result cache: which tasks are cached, under which key, for how long.

The key covers everything that decides the answer: model, agent role and goal, the
rendered description, the context content and the output schema. In a process the cache
is one actor shared by the cluster (persisted with the checkpoint store when there is
one); ``Task.execute()`` uses a cache in this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray_orch.core.output import TaskOutput
from ray_orch.core.prompt import PromptParts
from ray_orch.store.cache import ResultCache, cache_key

if TYPE_CHECKING:
    from ray_orch.policy.definition import TaskDefinition as Task

__all__ = ["DEFAULT_TTL", "from_cache", "key_for", "local_cache", "ttl_for"]

DEFAULT_TTL = 3600.0
_local: ResultCache | None = None


def ttl_for(task: Task, process_cache: bool) -> float | None:
    """Seconds to keep this task's result, or None when it is not cached."""
    if task.cache_ttl is not None:
        return float(task.cache_ttl) if task.cache_ttl > 0 else None
    return DEFAULT_TTL if process_cache else None


def key_for(task: Task, agent: Any, parts: PromptParts) -> str:
    """The cache key of one task request."""
    schema = task.output_schema()
    config = getattr(agent, "llm_config", None)
    return cache_key(model=getattr(config, "model", "") or "", role=getattr(agent, "role", ""),
                     goal=getattr(agent, "goal", ""), description=parts.description,
                     context=parts.context_text(),
                     schema=schema.model_json_schema() if schema else
                     ({"decision": sorted(task.condition)} if task.condition else None))


def from_cache(value: dict[str, Any]) -> TaskOutput:
    """A cached value as the output of this run (marked as a hit)."""
    output = TaskOutput(**value)
    meta = output.metadata
    meta["cache"] = "hit"
    # Nothing was spent this time: keep what the cached answer cost apart, so budgets
    # and cost metrics do not count it again.
    meta["cached_tokens"] = meta.get("tokens_used", 0)
    meta["cached_cost_usd"] = meta.get("cost_usd", 0.0)
    meta.update(tokens_used=0, cost_usd=0.0, llm_calls=[], retry_count=0)
    return output


def local_cache() -> ResultCache:
    """The cache ``Task.execute()`` uses in this process."""
    global _local
    if _local is None:
        _local = ResultCache(default_ttl=DEFAULT_TTL)
    return _local
