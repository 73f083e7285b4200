"""Where an agent's pool members run: their Ray actor options, and the keys that pool
them (``agent_key``) and reuse warm ones (``placement_options``)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["agent_key", "placement_options"]


def agent_key(agent: Any) -> str:
    """An agent's pool key: ``Agent.key()``, or one per adapter object (any ``chat()``)."""
    key = getattr(agent, "key", None)
    if callable(key):
        return str(key())
    return f"adapter:{type(agent).__qualname__}:{id(agent):x}"


def placement_options(agent: Any) -> tuple[str, dict[str, Any]]:
    """Ray actor options for an agent's pool members, and a key for reusing warm ones."""
    options: dict[str, Any] = {"num_cpus": getattr(agent, "num_cpus", 0.0) or 0.0,
                               "max_concurrency": 1000}
    resources = getattr(agent, "resources", None)
    if resources:
        options["resources"] = dict(resources)
    strategy = getattr(agent, "scheduling_strategy", None)
    if strategy is not None:
        options["scheduling_strategy"] = strategy
    key = json.dumps({k: v if isinstance(v, (int, float, str, dict)) else repr(v)
                      for k, v in options.items()}, sort_keys=True)
    return key, options
