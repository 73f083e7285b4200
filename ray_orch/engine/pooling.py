"""``MemberPool``: the registry's logic, in plain Python. It leases members to runs and
keeps them warm between runs, keeps Supervisors for the next run, reclaims what a lost
Supervisor held, and reaps what idled too long.

It owns no process: it starts and stops them through a ``Starter`` passed in. The
``ActorRegistry`` actor wraps it with Ray actors; ``ray_orch.testing.fakes.FakeRegistry``
wraps it with in-process members, so the pooling is unit-tested without Ray.

Example:
    >>> from ray_orch.engine.messages import LeaseRequest
    >>> class Numbers:
    ...     made = 0
    ...     def start_member(self, options):
    ...         Numbers.made += 1
    ...         return f"m{Numbers.made}"
    ...     def start_supervisor(self): return "s"
    ...     def stop(self, handle): pass
    ...     def release(self, supervisor): pass
    ...     def actor_id(self, handle): return handle
    >>> pool = MemberPool(Numbers(), idle_limit=1)
    >>> first = pool.lease(LeaseRequest(placement_key="cpu", count=2, agent_key="a"))
    >>> pool.give_back("cpu", first, agent_key="a")   # one kept, one over the limit
    >>> pool.lease(LeaseRequest(placement_key="cpu", count=1)), pool.size()
    (['m1'], 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from ray_orch.engine.messages import LeaseRequest

__all__ = ["MemberPool", "Starter"]

SUPERVISORS_KEPT = 4
"""The most idle Supervisors kept for the next runs."""
SERVED_REMEMBERED = 8
"""How many agents a member remembers having served (memory must not grow with runs)."""


class Starter(Protocol):
    """How a ``MemberPool`` starts, stops and names the processes it owns."""

    def start_member(self, options: dict[str, Any]) -> Any:
        """A new member with these placement options; returns its handle."""
        ...

    def start_supervisor(self) -> Any:
        """A new Supervisor; returns its handle."""
        ...

    def stop(self, handle: Any) -> None:
        """Stop a member or Supervisor (no error if it is gone)."""
        ...

    def release(self, supervisor: Any) -> None:
        """Ask a Supervisor about to stop to give back the members it keeps."""
        ...

    def actor_id(self, handle: Any) -> str:
        """A handle's identity (the actor id, hex, on Ray)."""
        ...


class MemberPool:
    """Every member and Supervisor a registry owns, which of them idle, and who holds
    the others.

    Args:
        starter: starts and stops the processes.
        idle_limit: the most idle members kept; beyond it, given-back members stop.
        idle_ttl: seconds idle after which ``reap`` stops an actor (None: never).
        clock: the time, in seconds (``time.monotonic``).
    """

    def __init__(self, starter: Starter, *, idle_limit: int = 64,
                 idle_ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.starter = starter
        self.idle_limit = idle_limit
        self.idle_ttl = idle_ttl
        self.clock = clock
        self.idle: dict[str, list[Any]] = {}
        """Idle members, by placement key."""
        self.served: dict[str, list[str | None]] = {}
        """The agents each member served lately (a few), by actor id."""
        self.supervisors: list[Any] = []
        """Idle Supervisors, kept for the next runs."""
        self.owned: dict[str, Any] = {}
        """Every actor this pool started, whoever uses it now, by actor id: the registry
        owns them (on Ray, an owner that drops its last handle stops the actor)."""
        self.supervisor_ids: set[str] = set()
        """Which of ``owned`` are Supervisors."""
        self.lessee: dict[str, str] = {}
        """Which Supervisor (actor id) holds each leased member, by member id: a lost
        Supervisor's members are reclaimed, not leaked."""
        self.idle_since: dict[str, float] = {}
        """When each idle actor (member or Supervisor) was given back, for ``reap``."""
        self.drivers: dict[str, str] = {}
        """Which driver (its Ray job id) holds each leased Supervisor, where it said:
        ``orphans`` finds those whose driver ended without giving them back."""

    def _id(self, handle: Any) -> str:
        return self.starter.actor_id(handle)

    def _new_member(self, options: dict[str, Any]) -> Any:
        handle = self.starter.start_member(options)
        self.owned[self._id(handle)] = handle
        return handle

    def lease(self, request: LeaseRequest) -> list[Any]:
        """Hand out ``request.count`` members of its placement, preferring idle ones
        that served ``request.agent_key`` lately (their model client is warm), starting
        new ones for the rest."""
        warm = self.idle.setdefault(request.placement_key, [])
        warm.sort(key=lambda h: request.agent_key in self.served.get(self._id(h), ()))
        handles = [warm.pop() for _ in range(min(request.count, len(warm)))]
        for handle in handles:
            self.idle_since.pop(self._id(handle), None)
        while len(handles) < request.count:
            handles.append(self._new_member(request.options))
        if request.lessee is not None:
            for handle in handles:
                self.lessee[self._id(handle)] = request.lessee
        return handles

    def prestart(self, placement_key: str, count: int, options: dict[str, Any]) -> int:
        """Start members now, idle, so that at least ``count`` (within the idle limit)
        wait with this placement. Returns how many were started."""
        warm = self.idle.setdefault(placement_key, [])
        started = 0
        while len(warm) < min(count, self.idle_limit):
            handle = self._new_member(options)
            self.idle_since[self._id(handle)] = self.clock()
            warm.append(handle)
            started += 1
        return started

    def give_back(self, placement_key: str, handles: list[Any],
                  agent_key: str | None = None) -> None:
        """Take members back after a run (they served ``agent_key``); beyond the idle
        limit they are stopped, and ones no longer owned (reaped, forgotten) dropped."""
        warm = self.idle.setdefault(placement_key, [])
        for handle in handles:
            actor_id = self._id(handle)
            self.lessee.pop(actor_id, None)
            served = self.served.setdefault(actor_id, [])
            if agent_key not in served:
                served[:] = [*served[-(SERVED_REMEMBERED - 1):], agent_key]
            if actor_id not in self.owned:
                continue
            if self.size() < self.idle_limit:
                warm.append(handle)
                self.idle_since[actor_id] = self.clock()
            else:
                self._stop(handle)

    def reclaim(self, lessee: str) -> int:
        """A Supervisor was lost: stop every member it held (leased, in use or kept for
        its next run), and forget it. Returns how many members were stopped."""
        held = [self.owned[a] for a, who in self.lessee.items()
                if who == lessee and a in self.owned]
        for handle in held:
            self.lessee.pop(self._id(handle), None)
            self.owned.pop(self._id(handle), None)
            self.starter.stop(handle)
        for key, warm in self.idle.items():
            self.idle[key] = [h for h in warm if self._id(h) in self.owned]
        self.drivers.pop(lessee, None)
        if lessee in self.supervisor_ids:
            self.supervisor_ids.discard(lessee)
            self.owned.pop(lessee, None)
        self.supervisors = [h for h in self.supervisors if self._id(h) != lessee]
        return len(held)

    def lease_supervisor(self, driver: str | None = None) -> Any:
        """A Supervisor for a new run: a kept idle one, or a new one; ``driver``: the
        leasing driver's job id (see ``orphans``)."""
        if self.supervisors:
            handle = self.supervisors.pop()
            self.idle_since.pop(self._id(handle), None)
        else:
            handle = self.starter.start_supervisor()
            self.owned[self._id(handle)] = handle
            self.supervisor_ids.add(self._id(handle))
        if driver is not None:
            self.drivers[self._id(handle)] = driver
        return handle

    def orphans(self, alive: set[str]) -> list[Any]:
        """The leased Supervisors whose driver's job is not in ``alive`` (it ended while
        keeping one between runs, or died in a run)."""
        return [self.owned[a] for a, job in self.drivers.items()
                if job not in alive and a in self.owned]

    def give_back_supervisor(self, handle: Any) -> None:
        """Keep a Supervisor whose run ended, for the next run (a few at most). One
        already back (given back twice: its driver's late call after the registry took
        it back) or no longer owned is ignored."""
        actor_id = self._id(handle)
        self.drivers.pop(actor_id, None)
        if actor_id not in self.owned or any(self._id(h) == actor_id for h in self.supervisors):
            return
        if len(self.supervisors) < SUPERVISORS_KEPT:
            self.supervisors.append(handle)
            self.idle_since[actor_id] = self.clock()
        else:
            self._stop_supervisor(handle)

    def _stop_supervisor(self, handle: Any) -> None:
        # Its kept members come back first, or they would idle forever.
        self.starter.release(handle)
        self._stop(handle)
        self.supervisor_ids.discard(self._id(handle))

    def _stop(self, handle: Any) -> None:
        actor_id = self._id(handle)
        self.owned.pop(actor_id, None)
        self.served.pop(actor_id, None)
        self.idle_since.pop(actor_id, None)
        self.starter.stop(handle)

    def reap(self, idle_ttl: float | None = None) -> int:
        """Stop the actors idle for ``idle_ttl`` seconds or more (default: the pool's
        TTL): Supervisors (after taking back their kept members), then members. Returns
        how many were stopped."""
        ttl = self.idle_ttl if idle_ttl is None else idle_ttl
        if ttl is None:
            return 0
        now = self.clock()
        stopped = 0
        for handle in list(self.supervisors):
            if now - self.idle_since.get(self._id(handle), now) >= ttl:
                self.supervisors.remove(handle)
                self._stop_supervisor(handle)
                stopped += 1
        for key, warm in list(self.idle.items()):
            # Members a Supervisor just gave back count from when it went idle.
            old = [h for h in warm if now - self.idle_since.get(self._id(h), now) >= ttl]
            self.idle[key] = [h for h in warm if h not in old]
            for handle in old:
                self._stop(handle)
            stopped += len(old)
            if not self.idle[key]:
                del self.idle[key]
        return stopped

    def forget(self, handles: list[Any]) -> None:
        """Drop dead members: they are neither owned nor idle any more."""
        dead = {self._id(h) for h in handles}
        for actor_id in dead:
            self.owned.pop(actor_id, None)
            self.lessee.pop(actor_id, None)
            self.served.pop(actor_id, None)
            self.idle_since.pop(actor_id, None)
        for key, warm in self.idle.items():
            self.idle[key] = [h for h in warm if self._id(h) not in dead]

    def members(self) -> list[Any]:
        """Every member owned, busy or idle (Supervisors aside)."""
        return [h for k, h in self.owned.items() if k not in self.supervisor_ids]

    def size(self) -> int:
        """How many members idle."""
        return sum(len(v) for v in self.idle.values())

    def idle_ids(self) -> set[str]:
        """The ids of every idle member and Supervisor."""
        ids = {self._id(h) for warm in self.idle.values() for h in warm}
        return ids | {self._id(h) for h in self.supervisors}
