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
from collections.abc import AsyncIterator
from typing import Any

from ray_orch.core.events import Event
from ray_orch.engine.member import AgentMember
from ray_orch.engine.ports import KeptMembers, Services
from ray_orch.store.cache import ResultCache

__all__ = ["FakeCache", "FakeHandle", "FakeRegistry", "FakeRemote", "ListSink",
           "MemberLost", "fake_services"]

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

    def remote(self, *args: Any) -> Any:
        return self.owner._call(self.name, args, self.streaming)


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

    def _call(self, name: str, args: tuple[Any, ...], streaming: bool) -> Any:
        loop = asyncio.get_running_loop()
        outer: asyncio.Future[Any] = loop.create_future()
        if self._dead:
            outer.set_exception(MemberLost(self._actor_id))
            return outer
        method = getattr(self._target, name)
        if inspect.isasyncgenfunction(method):
            return self._stream(method(*args))
        result = method(*args)
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


class FakeRegistry:
    """The ``ActorRegistry``'s port: leases fresh ``AgentMember``s, takes them back."""

    def __init__(self) -> None:
        self.created: list[FakeHandle] = []
        self.idle: dict[str, list[FakeHandle]] = {}
        self.forgotten: list[FakeHandle] = []

    def lease(self, placement_key: str, count: int, options: dict[str, Any],
              agent_key: str | None = None, lessee: str | None = None) -> list[FakeHandle]:
        warm = self.idle.setdefault(placement_key, [])
        handles = [warm.pop() for _ in range(min(count, len(warm)))]
        while len(handles) < count:
            handle = FakeHandle(AgentMember())
            self.created.append(handle)
            handles.append(handle)
        return handles

    def give_back(self, placement_key: str, handles: list[FakeHandle],
                  agent_key: str | None = None) -> None:
        self.idle.setdefault(placement_key, []).extend(h for h in handles if not h._dead)

    def forget(self, handles: list[FakeHandle]) -> None:
        self.forgotten.extend(handles)

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
                  store: Any = None) -> Services:
    """``Services`` for a ``Run`` in this process: fake registry and members, an
    optional in-process cache and metrics sink.

    Args:
        registry: the registry to lease from (a new one by default).
        cache: give the run a result cache.
        sink: where metrics events go.
        kept: members kept between runs (as a Supervisor keeps them).
        store: the run store (``ray_orch.store.factory.open_store(...)``), if any.
    """
    return Services(registry=FakeHandle(registry or FakeRegistry()), remote=FakeRemote(),
                    kept=kept or KeptMembers(),
                    cache=FakeHandle(FakeCache()) if cache else None,  # type: ignore[arg-type]
                    metrics=sink, store=store)
