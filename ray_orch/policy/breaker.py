"""Circuit breakers: stop calling a failing service, probe it again after a pause.

``BreakerState`` is the plain state machine (closed -> open after ``failure_threshold``
consecutive failures -> half-open after ``timeout`` s, where one probe goes through ->
closed on success, open again on failure). ``CircuitBreaker`` is what users attach to a
task or an agent; when Ray is running its state lives in one named actor, so every pool
member, run and node shares it; without Ray it lives in this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from ray_orch.core import shared
from ray_orch.core.errors import CircuitOpenError
from ray_orch.core.output import TaskOutput
from ray_orch.core.proc import ray_is_running

__all__ = ["BreakerState", "CircuitBreaker", "Guarded", "breaker_guard", "share_breakers"]

State = Literal["closed", "open", "half_open"]
OPEN_MESSAGE = "Circuit breaker open - service temporarily unavailable"
_names = itertools.count(1)

# Where breaker state lives when Ray runs: the cluster's breaker actor when the work in
# progress shares it (``ray_orch.core.shared``: a run's members do); else this process.


def share_breakers(get_actor: Callable[[], Any]) -> None:
    """Keep this process's breaker state in the actor ``get_actor()`` returns while Ray
    runs, for work outside a run (a run's attempts get theirs with the run)."""
    shared.install(dataclasses.replace(shared.installed(), breakers=get_actor))


class BreakerState:
    """The breaker state machine (no I/O; the actor and local breakers share it)."""

    def __init__(self, failure_threshold: int = 3, timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.timeout = timeout
        self.clock = clock
        self.state: State = "closed"
        self.failure_count = 0
        self.opened_at: float | None = None
        self.probe_in_flight = False

    def acquire(self) -> State:
        """Ask to make a call: ``closed`` / ``half_open`` (a probe) allow it, ``open`` refuses."""
        if self.state == "open":
            assert self.opened_at is not None
            if self.clock() - self.opened_at < self.timeout:
                return "open"
            self.state = "half_open"
            self.probe_in_flight = False
        if self.state == "half_open":
            if self.probe_in_flight:
                return "open"
            self.probe_in_flight = True
            return "half_open"
        return "closed"

    def record_success(self) -> State:
        self.state = "closed"
        self.failure_count = 0
        self.opened_at = None
        self.probe_in_flight = False
        return self.state

    def record_failure(self) -> State:
        self.failure_count += 1
        if self.state == "half_open" or self.failure_count >= self.failure_threshold:
            self.state = "open"
            self.opened_at = self.clock()
        self.probe_in_flight = False
        return self.state

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "failure_count": self.failure_count,
                "opened_at": self.opened_at}


class CircuitBreaker:
    """A circuit breaker to attach to a ``Task`` or an ``Agent``.

    Args:
        failure_threshold: consecutive failed task runs that open the circuit.
        timeout: seconds the circuit stays open before one probe is let through.
        name: shared identity; breakers with one name share one state cluster-wide.
        raise_on_open: raise ``CircuitOpenError`` instead of returning the guide's
            ``TaskOutput(raw="Circuit breaker open ...", metadata={"circuit_status": "open"})``.

    Example:
        >>> breaker = CircuitBreaker(failure_threshold=3, timeout=60, name="payments-api")
        >>> breaker.name
        'payments-api'
    """

    def __init__(self, failure_threshold: int = 3, timeout: float = 60.0,
                 name: str | None = None, raise_on_open: bool = False) -> None:
        self.failure_threshold = failure_threshold
        self.timeout = timeout
        self.name = name or f"breaker-{next(_names)}"
        self.raise_on_open = raise_on_open
        self._local: BreakerState | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_local": None}

    async def _call(self, method: str) -> State:
        get_actor = shared.current().breakers
        if get_actor is not None and ray_is_running():
            actor = get_actor()
            return await getattr(actor, method).remote(self.name, self.failure_threshold,  # type: ignore[no-any-return]
                                                       self.timeout)
        if self._local is None:
            self._local = BreakerState(self.failure_threshold, self.timeout)
        return getattr(self._local, method)()  # type: ignore[no-any-return]

    async def acquire(self) -> State:
        """Ask to make a call (see ``BreakerState.acquire``)."""
        return await self._call("acquire")

    async def record_success(self) -> State:
        return await self._call("record_success")

    async def record_failure(self) -> State:
        return await self._call("record_failure")

    async def state(self) -> State:
        """The current state without changing it."""
        return await self._call("peek")


class Guarded(Protocol):
    """What a breaker reads of a task (``Task`` is one; a protocol, since the task's
    definition names ``CircuitBreaker``)."""

    @property
    def id(self) -> str:
        """The task's name."""
        ...

    @property
    def agent(self) -> Any:
        """Its agent (whose ``circuit_breaker`` guards it when it has none)."""
        ...

    @property
    def agent_role(self) -> str | None:
        """Its agent's role (the open breaker's answer names it)."""
        ...

    @property
    def circuit_breaker(self) -> Any:
        """Its own breaker, if any."""
        ...


def breaker_for(task: Guarded) -> CircuitBreaker | None:
    """The breaker guarding a task: its own, else its agent's."""
    breaker = task.circuit_breaker or getattr(task.agent, "circuit_breaker", None)
    return breaker if isinstance(breaker, CircuitBreaker) else None


async def breaker_guard(task: Guarded, body: Callable[[], Awaitable[TaskOutput]],
                        on_state: Callable[[str, str], None] | None = None) -> TaskOutput:
    """Run ``body`` behind the task's breaker (if any); ``on_state(name, state)`` hears
    the breaker's state before the call and after it."""
    breaker = breaker_for(task)
    if breaker is None:
        return await body()
    report = on_state or (lambda name, state: None)
    state = await breaker.acquire()
    report(breaker.name, state)
    if state == "open":
        if breaker.raise_on_open:
            raise CircuitOpenError(f"task '{task.id}': circuit '{breaker.name}' is open",
                                   task=task.id)
        return TaskOutput(raw=OPEN_MESSAGE, task_id=task.id, agent=task.agent_role,
                          metadata={"circuit_status": "open", "breaker": breaker.name,
                                    "execution_time": 0.0, "retry_count": 0,
                                    "tokens_used": 0, "cost_usd": 0.0, "model": None})
    try:
        output = await body()
    except BaseException:
        # Every way out settles the breaker: a timeout or a cancelled run counts as a
        # failure (a hanging service must open it; a probe must never stay in flight).
        report(breaker.name, await asyncio.shield(breaker.record_failure()))
        raise
    report(breaker.name, await breaker.record_success())
    output.metadata["circuit_status"] = "closed" if state == "closed" else "closed_after_probe"
    output.metadata["breaker"] = breaker.name
    return output
