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
from ray_orch.engine.messages import LeaseRequest
from ray_orch.engine.pooling import MemberPool


class _RayStarter:
    """The ``MemberPool``'s ``Starter`` on Ray: actors on the placement asked for."""

    def __init__(self, me: Any) -> None:
        self.me = me  # the registry's own handle, for the Supervisors it starts

    def start_member(self, options: dict[str, Any]) -> Any:
        return AgentActor.options(**options).remote()  # type: ignore[attr-defined]

    def start_supervisor(self) -> Any:
        return Supervisor.options(**ON_HEAD).remote(self.me)  # type: ignore[attr-defined]

    def stop(self, handle: Any) -> None:
        with contextlib.suppress(Exception):
            ray.kill(handle)

    def release(self, supervisor: Any) -> None:
        with contextlib.suppress(Exception):
            ray.get(supervisor.release.remote(), timeout=10)

    def actor_id(self, handle: Any) -> str:
        return handle._actor_id.hex()  # type: ignore[no-any-return]


@ray.remote(num_cpus=0)
class ActorRegistry:
    """Leases agent actors to runs and keeps them warm between runs (one per driver job):
    a thin shell over ``ray_orch.engine.pooling.MemberPool``."""

    def __init__(self, idle_limit: int = 64, idle_ttl: float | None = None,
                 standing: bool = False) -> None:
        me = ray.get_runtime_context().current_actor
        self.pool = MemberPool(_RayStarter(me), idle_limit=idle_limit, idle_ttl=idle_ttl)
        if idle_ttl or standing:
            _start_reaper(me, idle_ttl, orphans=standing)

    def lease(self, request: LeaseRequest) -> list[Any]:
        """Hand out members (``MemberPool.lease``)."""
        return self.pool.lease(request)

    def reclaim(self, lessee: str) -> int:
        """A Supervisor was lost: stop what it held (``MemberPool.reclaim``)."""
        return self.pool.reclaim(lessee)

    def prestart(self, placement_key: str, count: int, options: dict[str, Any]) -> int:
        """Start idle members now (``MemberPool.prestart``)."""
        return self.pool.prestart(placement_key, count, options)

    def prewarm(self, placement_key: str, count: int, options: dict[str, Any]) -> int:
        """Start a Supervisor and ``count`` members now, idle, for a first run to find
        warm, and load their code in the background: returns as soon as they are asked
        for (``ray-orch up`` does not wait for them). Returns how many members started."""
        supervisor = self.pool.lease_supervisor()
        self.pool.give_back_supervisor(supervisor)
        started = self.pool.prestart(placement_key, count, options)
        members = self.pool.idle.get(placement_key, [])[:count]

        def load() -> None:  # the engine's modules and the model client, before a run
            with contextlib.suppress(Exception):
                ray.get([supervisor.info.remote(), *(m.warm_imports.remote() for m in members)])

        threading.Thread(target=load, name="registry-prewarm", daemon=True).start()
        return started

    def give_back(self, placement_key: str, handles: list[Any],
                  agent_key: str | None = None) -> None:
        """Take members back after a run (``MemberPool.give_back``)."""
        self.pool.give_back(placement_key, handles, agent_key)

    def lease_supervisor(self) -> Any:
        """A Supervisor for a new run (``MemberPool.lease_supervisor``)."""
        return self.pool.lease_supervisor()

    def lease_supervisor_for(self, driver: str | None) -> Any:
        """A Supervisor for a new run of the driver whose Ray job id is ``driver``: a
        standing runtime's drivers keep theirs a while, and ``reclaim_orphans`` takes
        back those whose job ended (a method of its own: a runtime an older ray-orch
        started has none, and its drivers give theirs back at once)."""
        return self.pool.lease_supervisor(driver)

    def reclaim_orphans(self) -> int:
        """Take back the Supervisors whose driver ended while keeping one (it called
        ``ray.shutdown()``, or died): each one idle goes back to the pool (a dead one's
        members are stopped); one busy (still running or starting its lost driver's
        run, or slow to answer) is looked at again next time. Returns how many came
        back. Waits at most ~1 s (the registry serves every driver)."""
        if not self.pool.drivers:
            return 0
        from ray._private.state import jobs

        alive = {job["JobID"] for job in jobs() if not job["IsDead"]}
        asked = {h.info.remote(): h for h in self.pool.orphans(alive)}
        if not asked:
            return 0
        ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=1.0)
        back = 0
        for ref in ready:
            handle = asked[ref]
            try:
                busy = ray.get(ref)["busy"]
            except Exception:  # dead: what it held is stopped
                self.pool.reclaim(self.pool.starter.actor_id(handle))
                continue
            if not busy:
                self.pool.give_back_supervisor(handle)
                back += 1
        return back

    def give_back_supervisor(self, handle: Any) -> None:
        """Keep a Supervisor for the next run (``MemberPool.give_back_supervisor``)."""
        self.pool.give_back_supervisor(handle)

    def reap(self, idle_ttl: float | None = None) -> int:
        """Stop what idled too long (``MemberPool.reap``)."""
        return self.pool.reap(idle_ttl)

    def forget(self, handles: list[Any]) -> None:
        """Drop dead members (``MemberPool.forget``)."""
        self.pool.forget(handles)

    def members(self) -> list[Any]:
        """Every agent actor this registry owns, busy or idle (for operators and tests)."""
        return self.pool.members()

    def size(self) -> int:
        return self.pool.size()

    def status(self) -> dict[str, Any]:
        """What this registry holds, for ``ray-orch status``: pools (idle members by
        placement), every member and Supervisor with its pid and state, and settings."""
        pool = self.pool
        idle = pool.idle_ids()
        rows = []
        refs = [(k, h.info.remote()) for k, h in pool.owned.items()]
        for actor_id, ref in refs:
            try:
                info = ray.get(ref, timeout=5)
            except Exception as exc:  # busy past the timeout, or dead
                info = {"error": type(exc).__name__}
            kind = "supervisor" if actor_id in pool.supervisor_ids else "member"
            rows.append({"actor_id": actor_id, "kind": kind,
                         "state": "idle" if actor_id in idle else "leased", **info})
        return {"pools": {key: len(warm) for key, warm in pool.idle.items()},
                "actors": rows, "idle_limit": pool.idle_limit, "idle_ttl": pool.idle_ttl,
                "pid": os.getpid()}


REGISTRY_NAME = "rayorch-agent-registry"
# The run's control plane (the registry, which owns every agent actor, and the
# Supervisors) lives on the head node: losing a worker loses only pool members.
ON_HEAD: dict[str, Any] = {"resources": {"node:__internal_head__": 0.001},
                           "scheduling_strategy": "DEFAULT"}
NAMESPACE = "ray_orch"  # the standing runtime's detached actors live here
# How often the standing registry looks for Supervisors whose driver ended.
_ORPHANS_S = 2.0
_registry: Any = None
_standing = False


def _start_reaper(me: Any, idle_ttl: float | None, *, orphans: bool) -> None:
    """Ask the registry to reap idle actors every so often (with an ``idle_ttl``) and,
    with ``orphans`` (the standing registry), to take back the Supervisors of drivers
    that ended (calls run in order with the registry's other calls: no lock)."""
    def loop() -> None:
        period = max(0.5, min(idle_ttl / 2, 30.0)) if idle_ttl else _ORPHANS_S
        last = time.monotonic()
        while True:
            time.sleep(min(period, _ORPHANS_S) if orphans else period)
            if orphans:
                with contextlib.suppress(Exception):
                    ray.get(me.reclaim_orphans.remote())
            if idle_ttl and time.monotonic() - last >= period:
                last = time.monotonic()
                with contextlib.suppress(Exception):
                    ray.get(me.reap.remote())

    threading.Thread(target=loop, name="registry-reaper", daemon=True).start()


def start_standing_registry(*, idle_limit: int = 64, idle_ttl: float | None = None) -> Any:
    """The standing runtime's registry: detached, named, in the ``ray_orch`` namespace
    (created if there is none). Its actors outlive every driver."""
    return ActorRegistry.options(  # type: ignore[attr-defined]
        name=REGISTRY_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
        **ON_HEAD).remote(idle_limit, idle_ttl, standing=True)


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
