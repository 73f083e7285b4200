"""The cold path: what a driver's first run on a fresh Ray starts at once, in parallel.

On a fresh private Ray every actor of the first run is a process to start: the
registry, the Supervisor, the metrics hub and one member per agent. Left to the run,
they start one after another (the Supervisor starts the hub and leases the members
only once it is up). Here the driver asks for the members its agents need (and only
those) and for the hub (only when the run reports metrics) as soon as the registry
exists, so their processes start beside the Supervisor's.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["start_in_parallel"]


def start_in_parallel(registry: Any, agents: list[Any], *, metrics: bool,
                      metrics_host: str | None, metrics_port: int | None) -> None:
    """Start the first run's members and metrics hub now (fire and forget).

    Args:
        registry: the job's registry; it keeps the members idle for the run to lease.
        agents: the run's agents (one pool each, ``pool_size`` members).
        metrics: whether the run reports metrics (else no hub is started).
        metrics_host / metrics_port: the hub's binding, as the run will ask for it.
    """
    with contextlib.suppress(Exception):  # a head start only: the run works without it
        _start(registry, agents)
    if metrics:
        from actors.metrics_hub import start_metrics_hub

        with contextlib.suppress(Exception):  # metrics never fail a run: it retries
            start_metrics_hub(metrics_host, metrics_port)


def _start(registry: Any, agents: list[Any]) -> None:
    from ray_orch.engine.placement import agent_key, placement_options

    wanted: dict[str, tuple[int, dict[str, Any]]] = {}
    seen: set[str] = set()
    for agent in agents:
        key = agent_key(agent)
        if key in seen:
            continue
        seen.add(key)
        size = getattr(agent, "pool_size", 1)
        if not isinstance(size, int):
            continue  # not a real agent (a test double): its run says what is wrong
        placement_key, options = placement_options(agent)
        count, _ = wanted.get(placement_key, (0, options))
        wanted[placement_key] = (count + size, options)
    for placement_key, (count, options) in wanted.items():
        registry.prestart.remote(placement_key, count, options)
