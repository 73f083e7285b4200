"""The engine's ports: what a run needs from the cluster, as small protocols passed in.

The engine never imports ``actors`` nor Ray. Whoever starts a run hands it a
``Services`` record: on the cluster the ``Supervisor`` actor passes Ray actor handles and
Ray's cancel; the tests pass in-process fakes (``ray_orch.testing.fakes``) that implement
the same calls, so the run loop is tested without Ray.

Remote calls keep Ray's calling convention: a member's or the registry's method is called
as ``handle.method.remote(record)`` and returns an awaitable (an ``ObjectRef`` on Ray, a
future in a fake); ``handle.method.options(num_returns="streaming").remote(...)`` returns
an async iterator of awaitables. A call takes a record of ``engine/messages.py`` (or at
most three plain values), never a long positional list.

| Port        | On the cluster (``actors/``)            | In tests (``testing/fakes.py``)      |
|-------------|-----------------------------------------|--------------------------------------|
| ``Registry``| ``ActorRegistry`` over ``MemberPool``   | ``FakeRegistry`` over ``MemberPool`` |
| ``Member``  | ``AgentActor`` (an ``AgentMember``)     | ``FakeHandle(AgentMember())``        |
| ``Listener``| ``Supervisor`` over ``RunListener``     | ``FakeHandle(RunListener())``        |
| ``Cache``   | ``CacheActor`` over ``ResultCache``     | ``FakeCache`` over ``ResultCache``   |
| ``Remote``  | Ray's cancel, ``ActorDiedError``        | ``FakeRemote``, ``MemberLost``       |
| ``MetricsSink`` | ``EventBatcher`` to ``MetricsHub``  | ``ListSink``                         |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ray_orch.core.shared import SharedServices

__all__ = ["Cache", "KeptMembers", "Listener", "Member", "MetricsSink", "Registry", "Remote",
           "RemoteMethod", "Services"]


class RemoteMethod(Protocol):
    """One method of a remote object (an actor handle's ``handle.method``)."""

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Start the call; returns an awaitable of its result (or a stream, see above)."""
        ...

    def options(self, **options: Any) -> RemoteMethod:
        """The same method with call options (``num_returns="streaming"``)."""
        ...


class Remote(Protocol):
    """How the engine acts on remote calls it started."""

    lost: tuple[type[BaseException], ...]
    """Errors meaning the member that ran a call is gone (its work may go elsewhere)."""

    def cancel(self, ref: Any) -> None:
        """Stop a call started with ``.remote`` (no error if it already ended)."""
        ...


class Cache(Protocol):
    """The cluster's result cache (``CacheActor``): ``get`` / ``put`` are remote methods."""

    get: RemoteMethod
    put: RemoteMethod


class Registry(Protocol):
    """Leases members to runs and keeps them warm between runs (``ActorRegistry``; its
    logic is ``ray_orch.engine.pooling.MemberPool``). Remote methods:

    - ``lease(LeaseRequest)`` -> the members' handles;
    - ``give_back(placement_key, handles, agent_key=...)``: members a run is done with;
    - ``forget(handles)``: members that died.
    """

    lease: RemoteMethod
    give_back: RemoteMethod
    forget: RemoteMethod


class Member(Protocol):
    """One pool member (``AgentActor``: ``ray_orch.engine.member.AgentMember``). Remote
    methods, each taking a record of ``engine/messages.py``:

    - ``bind(Binding)``, ``unbind(run_id)``: a run's agents and tasks, and their end;
    - ``run(AttemptRequest)``, ``run_many(BatchRequest)`` (streaming),
      ``cancel_one(run_id, batch, index)``: task attempts;
    - ``run_after(HandOffRequest)``, ``forward(run_id, token, target)``,
      ``deliver(run_id, token, handed)``: hand-offs;
    - ``ask(Question)``: one model call (the hierarchical manager).
    """

    bind: RemoteMethod
    unbind: RemoteMethod
    run: RemoteMethod
    run_many: RemoteMethod
    cancel_one: RemoteMethod
    run_after: RemoteMethod
    forward: RemoteMethod
    deliver: RemoteMethod
    ask: RemoteMethod


class Listener(Protocol):
    """Where a run's members send live events and questions (the run's ``Supervisor``;
    its logic is ``ray_orch.engine.listener.RunListener``). Remote methods:

    - ``push(TokenBatch)``: token events, delivered in each member's order;
    - ``ask_tool(ToolQuestion)`` -> the answer (``{"answer": ...}``) to a tool call
      waiting for approval.
    """

    push: RemoteMethod
    ask_tool: RemoteMethod


class MetricsSink(Protocol):
    """Where a run's events go besides the driver (batched to the metrics hub)."""

    def add(self, event: Any) -> None:
        """Take one event (``ray_orch.core.events.Event``)."""
        ...

    def close(self) -> None:
        """Flush what is left; the run is over."""
        ...


@dataclass(kw_only=True)
class KeptMembers:
    """Members a Supervisor keeps between its runs, by (placement key, agent key): a run
    of the same agents then starts without leasing from the registry (~3-5 ms here).

    Example:
        >>> kept = KeptMembers(limit=2)
        >>> kept.keep(("cpu", "agent"), ["a", "b", "c"])
        ['c']
        >>> kept.take(("cpu", "agent"))
        ['a', 'b']
    """

    limit: int = 16
    """The most members kept across every agent."""
    held: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    """The members kept, by (placement key, agent key)."""

    def take(self, slot: tuple[str, str]) -> list[Any]:
        """Every member kept for ``slot`` (they are no longer kept)."""
        return self.held.pop(slot, [])

    def take_placed(self, placement_key: str, count: int) -> list[Any]:
        """Up to ``count`` members kept for any agent with this placement (a member
        serves whatever agents a run binds to it: a changed model needs no new process).

        Example:
            >>> kept = KeptMembers()
            >>> _ = kept.keep(("cpu", "old-model"), ["a", "b"])
            >>> kept.take_placed("cpu", 1), kept.held
            (['b'], {('cpu', 'old-model'): ['a']})
        """
        taken: list[Any] = []
        for slot in [s for s in self.held if s[0] == placement_key]:
            while self.held[slot] and len(taken) < count:
                taken.append(self.held[slot].pop())
            if not self.held[slot]:
                del self.held[slot]
        return taken

    def keep(self, slot: tuple[str, str], handles: list[Any]) -> list[Any]:
        """Keep what fits under the limit; returns the rest, to give back."""
        room = self.limit - sum(len(v) for k, v in self.held.items() if k != slot)
        keep, back = handles[:max(0, room)], handles[max(0, room):]
        if keep:
            self.held[slot] = keep
        return back

    def release(self) -> dict[tuple[str, str], list[Any]]:
        """Everything kept (to give back to the registry); nothing is kept after."""
        held, self.held = self.held, {}
        return held


@dataclass(kw_only=True)
class Services:
    """What one run uses outside its own process, passed to ``Run``."""

    registry: Registry
    """Leases members (``ActorRegistry`` on the cluster)."""
    remote: Remote
    """Cancels remote calls and says which errors mean a lost member."""
    kept: KeptMembers = field(default_factory=KeptMembers)
    """The members this run's Supervisor keeps between runs."""
    cache: Cache | None = None
    """The result cache, when the run caches."""
    metrics: MetricsSink | None = None
    """Where events go besides the driver (the metrics hub)."""
    metrics_url: str | None = None
    """The Prometheus endpoint the metrics hub serves, for the driver."""
    metrics_error: str | None = None
    """Why metrics are off for this run, if they failed to start."""
    lessee: str | None = None
    """Who leases the run's members (the Supervisor's actor id): the registry reclaims
    them if it is lost."""
    listener: Listener | None = None
    """Where members send live events (tokens, tool progress) and tool-call questions
    (the Supervisor)."""
    store: Any = None
    """The run's store (``ray_orch.store.port.RunStore``), when it keeps state: journal,
    tool calls, pauses. A handle that reaches the same data from any node."""
    shared: SharedServices | None = None
    """The cluster services attempts share (breakers, rate limits, the embedded model's
    and the sentence encoder's node servers, MCP sessions), sent to every member with
    the run; None: each member keeps them in its own process."""
    line: Any = None
    """The Supervisor's open line (``ray_orch.core.line.Line``): members send copies of
    outputs there (``ray_orch.engine.replies``); None: replies come by call only."""
    defer_release: bool = False
    """The calls that unbind and give back the run's members wait for ``Run.release``
    (the Supervisor sends the result first)."""
