"""In-process fakes of the engine's ports (``ray_orch.engine.ports``), for tests.

They implement the same calls as the Ray actors they stand for, as httpx's
``MockTransport`` implements the transport interface: a ``Run`` given
``fake_services()`` runs its whole loop (pools, dispatch, hand-offs, batches, retries,
the journal, the cache, events) in this process, without Ray. Members are real
``AgentMember`` objects, so attempts call real models (the ``StubLLMServer``).

Example:
    >>> import asyncio
    >>> from ray_orch.testing.fakes import FakeHandle
    >>> class Echo:
    ...     async def say(self, text):
    ...         return text
    >>> async def main():
    ...     return await FakeHandle(Echo()).say.remote("hi")
    >>> asyncio.run(main())
    'hi'
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray_orch.core.events import Event
from ray_orch.core.shared import SharedServices
from ray_orch.engine.listener import RunListener
from ray_orch.engine.member import AgentMember
from ray_orch.engine.messages import LeaseRequest
from ray_orch.engine.pooling import MemberPool
from ray_orch.engine.ports import KeptMembers, Services
from ray_orch.store.cache import ResultCache

__all__ = ["FakeCache", "FakeHandle", "FakeRegistry", "FakeRemote", "FakeSupervisor",
           "ListSink", "MemberLost", "fake_services", "follow_run", "run_on_fakes", "spec_of"]

_ids = itertools.count(1)


class MemberLost(Exception):
    """A fake member was killed: what Ray's ``ActorDiedError`` is to a real one."""


class _Method:
    def __init__(self, owner: FakeHandle, name: str, streaming: bool = False) -> None:
        self.owner = owner
        self.name = name
        self.streaming = streaming

    def options(self, **options: Any) -> _Method:
        return _Method(self.owner, self.name, options.get("num_returns") == "streaming")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.owner._call(self.name, args, kwargs, self.streaming)


class FakeHandle:
    """An object's methods called as an actor's: ``handle.method.remote(*args)`` starts
    the call on the running event loop (concurrently, as an async actor would) and
    returns an awaitable; ``kill()`` fails every call in flight and every later one
    with ``MemberLost``."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._actor_id = f"fake-{next(_ids)}"
        self._dead = False
        self._in_flight: set[asyncio.Future[Any]] = set()

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    @property
    def target(self) -> Any:
        """The object behind the handle."""
        return self._target

    def kill(self) -> None:
        """Die: calls in flight fail with ``MemberLost``, as do later ones."""
        self._dead = True
        for outer in list(self._in_flight):
            if not outer.done():
                outer.set_exception(MemberLost(self._actor_id))

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              streaming: bool) -> Any:
        loop = asyncio.get_running_loop()
        outer: asyncio.Future[Any] = loop.create_future()
        if self._dead:
            outer.set_exception(MemberLost(self._actor_id))
            return outer
        method = getattr(self._target, name)
        if inspect.isasyncgenfunction(method):
            return self._stream(method(*args, **kwargs))
        result = method(*args, **kwargs)
        if not inspect.isawaitable(result):
            outer.set_result(result)
            return outer
        inner = asyncio.ensure_future(result)
        self._in_flight.add(outer)

        def done(_: asyncio.Future[Any]) -> None:
            self._in_flight.discard(outer)
            if outer.done():
                return
            if inner.cancelled():
                outer.cancel()
            elif inner.exception() is not None:
                outer.set_exception(inner.exception())  # type: ignore[arg-type]
            else:
                outer.set_result(inner.result())

        def cancelled(_: asyncio.Future[Any]) -> None:
            if outer.cancelled() or (outer.done() and self._dead):
                inner.cancel()  # cancelling the call (or its death) stops the work

        inner.add_done_callback(done)
        outer.add_done_callback(cancelled)
        return outer

    async def _stream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        try:
            async for item in items:
                if self._dead:
                    raise MemberLost(self._actor_id)
                ready = loop.create_future()
                ready.set_result(item)
                yield ready
        finally:
            await items.aclose()  # type: ignore[attr-defined]


class FakeSupervisor:
    """What a ``FakeRegistry`` leases as a Supervisor: it keeps no members (``release``
    gives back none) and answers ``info``."""

    def release(self) -> int:
        return 0

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "run_id": None, "kept": 0}


class _FakeStarter:
    """``MemberPool``'s ``Starter`` in this process: members are ``AgentMember``s behind
    ``FakeHandle``s; stopping one kills its handle."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry

    def start_member(self, options: dict[str, Any]) -> FakeHandle:
        handle = FakeHandle(AgentMember())
        self.registry.created.append(handle)
        return handle

    def start_supervisor(self) -> FakeHandle:
        return FakeHandle(FakeSupervisor())

    def stop(self, handle: FakeHandle) -> None:
        self.registry.stopped.append(handle)
        handle.kill()

    def release(self, supervisor: FakeHandle) -> None:
        supervisor.target.release()

    def actor_id(self, handle: FakeHandle) -> str:
        return handle._actor_id


class FakeRegistry:
    """The ``ActorRegistry``'s port in this process: the same ``MemberPool`` (the
    registry's logic) over in-process members, as ``FakeCache`` wraps ``ResultCache``.

    Args:
        idle_limit: the most idle members kept (``MemberPool``).
        idle_ttl: seconds idle before ``reap`` stops a member.
        clock: the pool's clock (a test moves it to reap).
    """

    def __init__(self, *, idle_limit: int = 64, idle_ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.created: list[FakeHandle] = []
        """Every member started, alive or not."""
        self.stopped: list[FakeHandle] = []
        """Members and Supervisors the pool stopped (over the idle limit, reaped...)."""
        self.forgotten: list[FakeHandle] = []
        """Members reported dead (``forget``)."""
        self.pool = MemberPool(_FakeStarter(self), idle_limit=idle_limit, idle_ttl=idle_ttl,
                               clock=clock)

    @property
    def idle(self) -> dict[str, list[Any]]:
        """Idle members, by placement key."""
        return self.pool.idle

    def lease(self, request: LeaseRequest) -> list[FakeHandle]:
        return self.pool.lease(request)

    def give_back(self, placement_key: str, handles: list[FakeHandle],
                  agent_key: str | None = None) -> None:
        self.pool.give_back(placement_key, handles, agent_key)

    def forget(self, handles: list[FakeHandle]) -> None:
        self.forgotten.extend(handles)
        self.pool.forget(handles)

    def prestart(self, placement_key: str, count: int, options: dict[str, Any]) -> int:
        return self.pool.prestart(placement_key, count, options)

    def reclaim(self, lessee: str) -> int:
        return self.pool.reclaim(lessee)

    def reap(self, idle_ttl: float | None = None) -> int:
        return self.pool.reap(idle_ttl)

    def lease_supervisor(self, driver: str | None = None) -> Any:
        return self.pool.lease_supervisor(driver)

    def give_back_supervisor(self, handle: Any) -> None:
        self.pool.give_back_supervisor(handle)

    def size(self) -> int:
        return self.pool.size()

    def members(self) -> list[FakeHandle]:
        """Every member made, alive or not."""
        return list(self.created)


class FakeRemote:
    """The ``Remote`` port in-process: a call is an asyncio future."""

    lost: tuple[type[BaseException], ...] = (MemberLost,)

    def cancel(self, ref: Any) -> None:
        if isinstance(ref, asyncio.Future):
            ref.cancel()


class FakeCache:
    """The ``CacheActor``'s port: a ``ResultCache`` in this process."""

    def __init__(self) -> None:
        self.cache = ResultCache()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def put(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        self.cache.put(key, value, ttl)


class ListSink:
    """A metrics sink that keeps every event (``closed`` once the run ended)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def add(self, event: Any) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


def fake_services(*, registry: FakeRegistry | None = None, cache: bool = False,
                  sink: ListSink | None = None, kept: KeptMembers | None = None,
                  listener: RunListener | None = None, lessee: str | None = None,
                  shared: SharedServices | None = None, store: Any = None) -> Services:
    """``Services`` for a ``Run`` in this process: fake registry and members, an
    optional in-process cache, metrics sink and listener.

    Args:
        registry: the registry to lease from (a new one by default).
        cache: give the run a result cache.
        sink: where metrics events go.
        kept: members kept between runs (as a Supervisor keeps them).
        listener: where members send token events and tool-call questions (what the
            Supervisor wraps): call its ``follow`` with the ``Run`` once made, as the
            Supervisor does (``follow_run``).
        lessee: who leases the members (a Supervisor's id).
        shared: the services the run's attempts share (``SharedServices``).
        store: the run store (``ray_orch.store.factory.open_store(...)``), if any.
    """
    return Services(registry=FakeHandle(registry or FakeRegistry()),  # type: ignore[arg-type]
                    remote=FakeRemote(), kept=kept or KeptMembers(),
                    cache=FakeHandle(FakeCache()) if cache else None,  # type: ignore[arg-type]
                    metrics=sink, lessee=lessee, shared=shared, store=store,
                    listener=FakeHandle(listener) if listener else None)  # type: ignore[arg-type]


def follow_run(listener: RunListener, run: Any, emit: Callable[[Event], None]) -> None:
    """Point ``listener`` at ``run`` (a ``Run`` given ``fake_services(listener=...)``),
    its events going to ``emit``, as the Supervisor does before executing it."""
    listener.follow(members_key=run.members_key, workflow=run.spec.workflow,
                    run_id=run.spec.run_id, emit=emit, approvals=run.approvals)


def run_on_fakes(spec: Any, *, services: Services | None = None,
                 listener: RunListener | None = None,
                 on_event: Callable[[Event, Any], None] | None = None) -> tuple[Any, list[Event]]:
    """Run ``spec`` (a ``RunSpec``) to its end in this process, on fakes; returns its
    ``RunResult`` and every event it emitted, in order.

    Args:
        spec: the run.
        services: its ports (``fake_services()`` by default, with ``listener`` and the
            spec's ``store``).
        listener: where members send tokens and tool-call questions (followed here, as
            the Supervisor follows its run).
        on_event: called with each event and the ``Run`` as it is emitted (to answer an
            approval request, cancel...).
    """
    from ray_orch.engine.run import Run

    events: list[Event] = []
    if services is None:
        # The spec's store handle becomes the run's, as the Supervisor does.
        services = fake_services(listener=listener, store=getattr(spec, "store", None))

    async def go() -> Any:
        def emit(event: Event) -> None:
            events.append(event)
            if on_event is not None:
                on_event(event, run)

        run = Run(spec, emit=emit, services=services)
        if listener is not None:
            follow_run(listener, run, emit)
        try:
            return await run.execute()
        finally:
            if listener is not None:
                listener.stop()

    return asyncio.run(go()), events


def spec_of(tasks: list[Any], agents: list[Any], **options: Any) -> Any:
    """A ``RunSpec`` of ``tasks`` for ``run_on_fakes``: workflow mode, run id ``"r1"``,
    no metrics hub, unless ``options`` say otherwise.

    Example:
        >>> spec_of([], [], mode="sequential").mode
        'sequential'
    """
    from ray_orch.engine.runspec import RunSpec

    options.setdefault("mode", "workflow")
    options.setdefault("metrics", False)
    return RunSpec(run_id=options.pop("run_id", "r1"), workflow=options.pop("workflow", "w"),
                   tasks=tasks, agents=agents, **options)
