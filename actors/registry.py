"""``ActorRegistry``: leases agent actors and Supervisors to runs and keeps them warm
between runs (one per driver job, named ``rayorch-agent-registry``)."""

from __future__ import annotations

import contextlib
from typing import Any

import ray

from actors.agent_actor import AgentActor
from actors.supervisor import Supervisor


@ray.remote(num_cpus=0)
class ActorRegistry:
    """Leases agent actors to runs and keeps them warm between runs (one per driver job)."""

    def __init__(self, idle_limit: int = 64) -> None:
        self.idle: dict[str, list[Any]] = {}
        self.served: dict[Any, set[str | None]] = {}
        self.supervisors: list[Any] = []
        # Every actor this registry created, whoever uses it now: the registry owns them,
        # and an owner that drops its last handle stops the actor.
        self.owned: dict[Any, Any] = {}
        self.supervisor_ids: set[Any] = set()
        # Which Supervisor (actor id, hex) holds each leased member: a lost Supervisor's
        # members are reclaimed (reclaim), not leaked.
        self.lessee: dict[Any, str] = {}
        self.idle_limit = idle_limit

    def lease(self, placement_key: str, count: int, options: dict[str, Any],
              agent_key: str | None = None, lessee: str | None = None) -> list[Any]:
        """Hand out ``count`` actors with the given placement options, preferring ones
        that served ``agent_key`` before (their model client is already warm); ``lessee``
        is the leasing Supervisor's actor id."""
        warm = self.idle.setdefault(placement_key, [])
        warm.sort(key=lambda h: self.served.get(h._actor_id, set()).__contains__(agent_key))
        handles = [warm.pop() for _ in range(min(count, len(warm)))]
        while len(handles) < count:
            handle = AgentActor.options(**options).remote()  # type: ignore[attr-defined]
            self.owned[handle._actor_id] = handle
            handles.append(handle)
        if lessee is not None:
            for handle in handles:
                self.lessee[handle._actor_id] = lessee
        return handles

    def reclaim(self, lessee: str) -> int:
        """A Supervisor was lost: stop every member it held (leased, in use or kept for
        its next run), and forget it. Returns how many members were stopped."""
        held = [self.owned[a] for a, who in self.lessee.items()
                if who == lessee and a in self.owned]
        for handle in held:
            self.lessee.pop(handle._actor_id, None)
            self.owned.pop(handle._actor_id, None)
            with contextlib.suppress(Exception):
                ray.kill(handle)
        for key, warm in self.idle.items():
            self.idle[key] = [h for h in warm if h._actor_id in self.owned]
        for actor_id in [a for a in self.supervisor_ids if a.hex() == lessee]:
            self.supervisor_ids.discard(actor_id)
            self.owned.pop(actor_id, None)
        self.supervisors = [h for h in self.supervisors if h._actor_id.hex() != lessee]
        return len(held)

    def give_back(self, placement_key: str, handles: list[Any],
                  agent_key: str | None = None) -> None:
        """Take actors back after a run; beyond the idle limit they are stopped."""
        warm = self.idle.setdefault(placement_key, [])
        for handle in handles:
            self.lessee.pop(handle._actor_id, None)
            self.served.setdefault(handle._actor_id, set()).add(agent_key)
            if sum(len(v) for v in self.idle.values()) < self.idle_limit:
                warm.append(handle)
            else:
                self.owned.pop(handle._actor_id, None)
                ray.kill(handle)

    def lease_supervisor(self) -> Any:
        """A Supervisor for a new run: a warm idle one, or a new one."""
        if self.supervisors:
            return self.supervisors.pop()
        me = ray.get_runtime_context().current_actor
        handle = Supervisor.options(**ON_HEAD).remote(me)  # type: ignore[attr-defined]
        self.owned[handle._actor_id] = handle
        self.supervisor_ids.add(handle._actor_id)
        return handle

    def give_back_supervisor(self, handle: Any) -> None:
        """Keep a Supervisor whose run ended, for the next run."""
        if len(self.supervisors) < 4:
            self.supervisors.append(handle)
        else:
            # Its kept members come back here first, or they would idle forever.
            with contextlib.suppress(Exception):
                ray.get(handle.release.remote(), timeout=10)
            self.owned.pop(handle._actor_id, None)
            ray.kill(handle)

    def forget(self, handles: list[Any]) -> None:
        """Drop dead actors from the warm set."""
        dead = {h._actor_id for h in handles}
        for actor_id in dead:
            self.owned.pop(actor_id, None)
            self.lessee.pop(actor_id, None)
        for key, warm in self.idle.items():
            self.idle[key] = [h for h in warm if h._actor_id not in dead]

    def members(self) -> list[Any]:
        """Every agent actor this registry owns, busy or idle (for operators and tests)."""
        return [h for k, h in self.owned.items() if k not in self.supervisor_ids]

    def size(self) -> int:
        return sum(len(v) for v in self.idle.values())


REGISTRY_NAME = "rayorch-agent-registry"
# The run's control plane (the registry, which owns every agent actor, and the
# Supervisors) lives on the head node: losing a worker loses only pool members.
ON_HEAD: dict[str, Any] = {"resources": {"node:__internal_head__": 0.001},
                           "scheduling_strategy": "DEFAULT"}
_registry: Any = None


def get_registry() -> Any:
    """This job's registry (created by the driver, so it lives as long as the driver).

    The driver keeps a handle: a named actor whose handles are all gone is stopped.
    """
    global _registry
    if _registry is None or not ray.is_initialized():
        _registry = ActorRegistry.options(  # type: ignore[attr-defined]
            name=REGISTRY_NAME, get_if_exists=True, **ON_HEAD).remote()
    return _registry
