"""``ActorRegistry``: leases agent actors and Supervisors to runs and keeps them warm
between runs (named ``rayorch-agent-registry``).

One per driver job by default; with a standing runtime (``ray-orch up``) one detached
registry in the ``ray_orch`` namespace serves every driver of the cluster, so that a
second script with the same agents starts no process. Idle actors are reaped after
``idle_ttl`` seconds, and at most ``idle_limit`` idle members are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import ray

from actors.agent_actor import AgentActor
from actors.supervisor import Supervisor


@ray.remote(num_cpus=0)
class ActorRegistry:
    """Leases agent actors to runs and keeps them warm between runs (one per driver job)."""

    def __init__(self, idle_limit: int = 64, idle_ttl: float | None = None) -> None:
        self.idle: dict[str, list[Any]] = {}
        # The agents each actor served lately (a few: memory must not grow with runs).
        self.served: dict[Any, list[str | None]] = {}
        self.supervisors: list[Any] = []
        # Every actor this registry created, whoever uses it now: the registry owns them,
        # and an owner that drops its last handle stops the actor.
        self.owned: dict[Any, Any] = {}
        self.supervisor_ids: set[Any] = set()
        # Which Supervisor (actor id, hex) holds each leased member: a lost Supervisor's
        # members are reclaimed (reclaim), not leaked.
        self.lessee: dict[Any, str] = {}
        self.idle_limit = idle_limit
        self.idle_ttl = idle_ttl
        # When each idle actor (member or Supervisor) was given back, for the reaper.
        self.idle_since: dict[Any, float] = {}
        if idle_ttl:
            _start_reaper(ray.get_runtime_context().current_actor, idle_ttl)

    def lease(self, placement_key: str, count: int, options: dict[str, Any],
              agent_key: str | None = None, lessee: str | None = None) -> list[Any]:
        """Hand out ``count`` actors with the given placement options, preferring ones
        that served ``agent_key`` before (their model client is already warm); ``lessee``
        is the leasing Supervisor's actor id."""
        warm = self.idle.setdefault(placement_key, [])
        warm.sort(key=lambda h: agent_key in self.served.get(h._actor_id, ()))
        handles = [warm.pop() for _ in range(min(count, len(warm)))]
        for handle in handles:
            self.idle_since.pop(handle._actor_id, None)
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

    def prestart(self, placement_key: str, count: int, options: dict[str, Any]) -> int:
        """Start members now, idle, so that at least ``count`` wait with this placement
        (a driver's first run: they start beside its Supervisor). Returns how many
        were started."""
        warm = self.idle.setdefault(placement_key, [])
        started = 0
        while len(warm) < min(count, self.idle_limit):
            handle = AgentActor.options(**options).remote()  # type: ignore[attr-defined]
            self.owned[handle._actor_id] = handle
            self.idle_since[handle._actor_id] = time.monotonic()
            warm.append(handle)
            started += 1
        return started

    def give_back(self, placement_key: str, handles: list[Any],
                  agent_key: str | None = None) -> None:
        """Take actors back after a run; beyond the idle limit they are stopped."""
        warm = self.idle.setdefault(placement_key, [])
        for handle in handles:
            self.lessee.pop(handle._actor_id, None)
            served = self.served.setdefault(handle._actor_id, [])
            if agent_key not in served:
                served[:] = [*served[-7:], agent_key]
            if handle._actor_id not in self.owned:
                continue  # reaped or forgotten meanwhile: not ours to keep
            if sum(len(v) for v in self.idle.values()) < self.idle_limit:
                warm.append(handle)
                self.idle_since[handle._actor_id] = time.monotonic()
            else:
                self._stop(handle)

    def lease_supervisor(self) -> Any:
        """A Supervisor for a new run: a warm idle one, or a new one."""
        if self.supervisors:
            handle = self.supervisors.pop()
            self.idle_since.pop(handle._actor_id, None)
            return handle
        me = ray.get_runtime_context().current_actor
        handle = Supervisor.options(**ON_HEAD).remote(me)  # type: ignore[attr-defined]
        self.owned[handle._actor_id] = handle
        self.supervisor_ids.add(handle._actor_id)
        return handle

    def give_back_supervisor(self, handle: Any) -> None:
        """Keep a Supervisor whose run ended, for the next run."""
        if len(self.supervisors) < 4:
            self.supervisors.append(handle)
            self.idle_since[handle._actor_id] = time.monotonic()
        else:
            self._stop_supervisor(handle)

    def _stop_supervisor(self, handle: Any) -> None:
        # Its kept members come back here first, or they would idle forever.
        with contextlib.suppress(Exception):
            ray.get(handle.release.remote(), timeout=10)
        self._stop(handle)
        self.supervisor_ids.discard(handle._actor_id)

    def _stop(self, handle: Any) -> None:
        self.owned.pop(handle._actor_id, None)
        self.served.pop(handle._actor_id, None)
        self.idle_since.pop(handle._actor_id, None)
        with contextlib.suppress(Exception):
            ray.kill(handle)

    def reap(self, idle_ttl: float | None = None) -> int:
        """Stop the actors idle for longer than ``idle_ttl`` seconds (default: the
        registry's TTL): Supervisors (after taking back their kept members), then
        members. Returns how many were stopped."""
        ttl = self.idle_ttl if idle_ttl is None else idle_ttl
        if ttl is None:
            return 0
        now = time.monotonic()
        stopped = 0
        for handle in list(self.supervisors):
            if now - self.idle_since.get(handle._actor_id, now) >= ttl:
                self.supervisors.remove(handle)
                self._stop_supervisor(handle)
                stopped += 1
        for key, warm in list(self.idle.items()):
            # Members a Supervisor just gave back count from when it went idle.
            old = [h for h in warm if now - self.idle_since.get(h._actor_id, now) >= ttl]
            self.idle[key] = [h for h in warm if h not in old]
            for handle in old:
                self._stop(handle)
            stopped += len(old)
            if not self.idle[key]:
                del self.idle[key]
        return stopped

    def forget(self, handles: list[Any]) -> None:
        """Drop dead actors from the warm set."""
        dead = {h._actor_id for h in handles}
        for actor_id in dead:
            self.owned.pop(actor_id, None)
            self.lessee.pop(actor_id, None)
            self.served.pop(actor_id, None)
            self.idle_since.pop(actor_id, None)
        for key, warm in self.idle.items():
            self.idle[key] = [h for h in warm if h._actor_id not in dead]

    def members(self) -> list[Any]:
        """Every agent actor this registry owns, busy or idle (for operators and tests)."""
        return [h for k, h in self.owned.items() if k not in self.supervisor_ids]

    def size(self) -> int:
        return sum(len(v) for v in self.idle.values())

    def status(self) -> dict[str, Any]:
        """What this registry holds, for ``ray-orch status``: pools (idle members by
        placement), every member and Supervisor with its pid and state, and settings."""
        idle = {h._actor_id for warm in self.idle.values() for h in warm}
        idle |= {h._actor_id for h in self.supervisors}
        rows = []
        refs = [(k, h, h.info.remote()) for k, h in self.owned.items()]
        for actor_id, _handle, ref in refs:
            try:
                info = ray.get(ref, timeout=5)
            except Exception as exc:  # busy past the timeout, or dead
                info = {"error": type(exc).__name__}
            kind = "supervisor" if actor_id in self.supervisor_ids else "member"
            rows.append({"actor_id": actor_id.hex(), "kind": kind,
                         "state": "idle" if actor_id in idle else "leased", **info})
        return {"pools": {key: len(warm) for key, warm in self.idle.items()},
                "actors": rows, "idle_limit": self.idle_limit, "idle_ttl": self.idle_ttl,
                "pid": os.getpid()}


REGISTRY_NAME = "rayorch-agent-registry"
# The run's control plane (the registry, which owns every agent actor, and the
# Supervisors) lives on the head node: losing a worker loses only pool members.
ON_HEAD: dict[str, Any] = {"resources": {"node:__internal_head__": 0.001},
                           "scheduling_strategy": "DEFAULT"}
NAMESPACE = "ray_orch"  # the standing runtime's detached actors live here
_registry: Any = None
_standing = False


def _start_reaper(me: Any, idle_ttl: float) -> None:
    """Ask the registry to reap idle actors every so often (calls run in order with the
    registry's other calls, so the reaper needs no lock)."""
    def loop() -> None:
        while True:
            time.sleep(max(0.5, min(idle_ttl / 2, 30.0)))
            with contextlib.suppress(Exception):
                ray.get(me.reap.remote())

    threading.Thread(target=loop, name="registry-reaper", daemon=True).start()


def start_standing_registry(*, idle_limit: int = 64, idle_ttl: float | None = None) -> Any:
    """The standing runtime's registry: detached, named, in the ``ray_orch`` namespace
    (created if there is none). Its actors outlive every driver."""
    return ActorRegistry.options(  # type: ignore[attr-defined]
        name=REGISTRY_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
        **ON_HEAD).remote(idle_limit, idle_ttl)


def find_standing_registry() -> Any | None:
    """The standing runtime's registry if this cluster has one (then ``get_registry``
    returns it and ``is_standing`` is true), else None."""
    global _registry, _standing
    try:
        handle = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
    _registry, _standing = handle, True
    return handle


def is_standing() -> bool:
    """Whether this process uses a standing runtime's registry."""
    return _standing and ray.is_initialized()


def get_registry() -> Any:
    """This job's registry (created by the driver, so it lives as long as the driver),
    or the standing runtime's (``find_standing_registry``).

    The driver keeps a handle: a named actor whose handles are all gone is stopped.
    """
    global _registry
    if _registry is None or not ray.is_initialized():
        _registry = ActorRegistry.options(  # type: ignore[attr-defined]
            name=REGISTRY_NAME, get_if_exists=True, **ON_HEAD).remote()
    return _registry
