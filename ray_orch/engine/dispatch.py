"""The dispatch seam: pools of agent members, least-loaded dispatch, backpressure, and
replacement of dead members. It runs inside the Supervisor (and behind the public
``AgentPool``) and reaches members only through the ports of ``engine/ports.py``: Ray
actor handles on the cluster, in-process fakes in tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.engine.growth import loop_backlogs, needed
from ray_orch.engine.messages import (
    AttemptRequest,
    BatchRequest,
    Binding,
    HandOffRequest,
    LeaseRequest,
)
from ray_orch.engine.placement import agent_key, placement_options
from ray_orch.engine.ports import KeptMembers, Registry, Remote
from ray_orch.engine.replies import FinishedBeforeCancel, Replies, first
from ray_orch.engine.replies import cancelled as _cancelled
from ray_orch.policy.agent import role_of

__all__ = ["FinishedBeforeCancel", "Pool", "PoolSet"]

# How often one attempt is moved to another member after its actor died.
_MAX_REPLACEMENTS = 3
@dataclass(kw_only=True, eq=False)
class _Item:
    """One loop iteration waiting for (or in) a batch."""

    run_id: str
    task_name: str
    inputs: dict[str, Any] | None
    context: dict[str, TaskOutput]
    missing: dict[str, str]
    iteration: int | None
    future: asyncio.Future[TaskOutput] = field(init=False)
    batch: int | None = None
    index: int = 0


class _MemberLost(Exception):
    """The member running a batch died: its unfinished items go elsewhere."""


# Loop iterations are sent in batches (RAY_ORCH_BATCH=0 sends one call each).
_BATCHING = os.environ.get("RAY_ORCH_BATCH", "1") != "0"
_batch_ids = itertools.count(1)


@dataclass(kw_only=True, eq=False)
class Member:
    handle: Any
    in_flight: int = 0
    bound: bool = False  # the run's tasks and agents were sent to it
    replacing: asyncio.Future[None] | None = None
    # When the run's bind was sent up front: done once the member is up and bound (a
    # task's timeout counts from then, not from the process start).
    ready: asyncio.Future[Any] | None = None


@dataclass(kw_only=True)
class Pool:
    """The actors serving one agent in one run.

    Dispatch goes to the least-loaded member; when every member runs
    ``agent.max_concurrency`` attempts, callers wait (backpressure) in arrival order.
    """

    key: str
    agent: Any
    members: list[Member]
    capacity: int
    placement_key: str
    options: dict[str, Any]
    registry: Registry
    remote: Remote
    lessee: str | None = None  # who leases (the Supervisor): the registry reclaims on loss
    binding: Binding | None = None  # the run's agents and tasks, sent with a first call
    max_size: int = 0  # the most members it grows to while attempts queue (0: no growth)
    keep_late: bool = False  # the run winds down: a cancelled attempt's reply is awaited
    replies: Replies | None = None  # outputs' copies on the Supervisor's line (``first``)
    waiters: int = 0
    replaced: int = 0
    grown: int = 0
    closed: bool = False
    # Members leased beyond the first ones and bound, not yet up: they take attempts once
    # their bind returns (``Member.ready``); the members already up go on meanwhile.
    starting: list[Member] = field(default_factory=list)
    _growing: asyncio.Future[None] | None = None
    _grow_failures: int = 0
    _joining: set[asyncio.Future[None]] = field(default_factory=set)
    _free: asyncio.Condition = field(default_factory=asyncio.Condition)
    _releasing: set[asyncio.Future[None]] = field(default_factory=set)
    _queued: dict[int, tuple[Member, list[_Item]]] = field(default_factory=dict)
    _flushing: bool = False
    _readers: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def in_flight(self) -> int:
        return sum(m.in_flight for m in self.members)

    @property
    def size(self) -> int:
        return self.capacity * len(self.members)

    async def _acquire(self) -> Member:
        async with self._free:
            self.waiters += 1
            try:
                while True:
                    # Only members up: one bound at once (``Member.ready``) takes
                    # attempts once its bind is back (``wake``), as one grown does.
                    up = [m for m in self.members if m.ready is None or m.ready.done()]
                    if up:
                        member = min(up, key=lambda m: m.in_flight)
                        if member.in_flight < self.capacity:
                            member.in_flight += 1
                            return member
                        self._maybe_grow()
                    try:
                        await self._free.wait()
                    except asyncio.CancelledError:
                        # A cancelled waiter may have consumed a notify meant for the
                        # queue: hand it on, or a free slot could sit unused forever.
                        self._free.notify()
                        raise
            finally:
                self.waiters -= 1

    def _maybe_grow(self) -> None:
        """Attempts queue behind busy members: lease more members (up to ``max_size``).
        Every limit holds per member as before (``capacity``), and rate limits and
        budgets per call."""
        if (self._growing is None and self._grow_failures < _MAX_REPLACEMENTS
                and len(self.members) + len(self.starting) < self.max_size):
            self._growing = asyncio.ensure_future(self._grow())

    async def _grow(self) -> None:
        # It runs a turn after the first attempt queued: the attempts dispatched in the
        # same turn (a loop's items) are counted, and their members leased in one call.
        try:
            count = needed(self.waiters, capacity=self.capacity, have=len(self.starting),
                           most=self.max_size - len(self.members))
            handles = await self.registry.lease.remote(LeaseRequest(
                placement_key=self.placement_key, count=count, options=self.options,
                agent_key=self.key, lessee=self.lessee)) if count else []
        except Exception:  # growth is best effort: the pool goes on at its size
            self._grow_failures += 1
            handles = []
        if self.closed:  # the run ended meanwhile: the members are not needed
            if handles:
                self.registry.give_back.remote(self.placement_key, handles, agent_key=self.key)
        else:
            self.start(handles)
        self._growing = None

    def start(self, handles: list[Any]) -> None:
        """Bind ``handles`` (members leased for this pool) now; each joins the pool,
        taking attempts, once it is up and bound (process start, imports)."""
        binding = dataclasses.replace(self.binding, prewarm="wait") if self.binding else None
        for handle in handles:
            member = Member(handle=handle, bound=True)
            member.ready = asyncio.ensure_future(handle.bind.remote(binding))
            self.starting.append(member)
            joining = asyncio.ensure_future(self._join(member))
            self._joining.add(joining)
            joining.add_done_callback(self._joining.discard)

    async def _join(self, member: Member) -> None:
        assert member.ready is not None
        failure: BaseException | None = None
        try:
            await member.ready
        except Exception as exc:  # lost (forgotten), or failed (given back): not used
            failure = exc
        async with self._free:
            self.starting.remove(member)
            if isinstance(failure, self.remote.lost):
                self.registry.forget.remote([member.handle])
            if self.closed:  # ``PoolSet.close`` gave it back with the others
                return
            if failure is None:
                self.members.append(member)
                self.grown += 1
            else:
                self._grow_failures += 1
                if not isinstance(failure, self.remote.lost):
                    if self.binding is not None:
                        member.handle.unbind.remote(self.binding.run_id)
                    self.registry.give_back.remote(self.placement_key, [member.handle],
                                                   agent_key=self.key)
            self._free.notify_all()  # waiters take it, or grow again

    def wake(self, _: Any = None) -> None:
        """A member came up: attempts waiting may take it."""
        if self.waiters:
            woken = asyncio.ensure_future(self._wake_all())
            self._releasing.add(woken)
            woken.add_done_callback(self._releasing.discard)

    async def _wake_all(self) -> None:
        async with self._free:
            self._free.notify_all()

    async def _release(self, member: Member) -> None:
        async with self._free:
            member.in_flight -= 1
            self._free.notify()

    def bind_for(self, member: Member) -> Binding | None:
        """The bind a call to ``member`` must carry: the run's agents and tasks with its
        first call (one message instead of two), nothing after. Calls that reach the
        member before that one wait there for it (an async actor starts calls in any
        order)."""
        if member.bound:
            return None
        member.bound = True
        return self.binding

    def _bind_again(self, member: Member) -> None:
        """A call that carried ``member``'s bind may never have run there (cancelled
        while queued, or never sent): bind now, or its other calls of this run would
        wait for it."""
        member.handle.bind.remote(self.binding)

    async def submit(self, run_id: str, task_name: str, inputs: dict[str, Any] | None,
                     context: dict[str, TaskOutput], missing: dict[str, str],
                     iteration: int | None, on_start: Callable[[Member], None] | None = None,
                     token: str | None = None,
                     on_sent: Callable[[Pool, Member, str], None] | None = None,
                     feedback: str | None = None) -> TaskOutput:
        """Run one task with this pool's agent on the least-loaded member.

        ``on_start(member)`` is called when a member takes the task (after any
        backpressure wait); it may raise to refuse the dispatch (a run whose budget is
        spent), and the slot is given back. With a ``token``, ``on_sent(pool, member,
        token)`` is called once the task is on its way, so that a follower can be handed
        off behind it; a task sent again gets a token of its own (an earlier member,
        still alive, must not feed the new followers).
        """
        lost = self.remote.lost
        for sends in range(_MAX_REPLACEMENTS + 1):
            sent_token = token if not sends or token is None else f"{token}~{sends}"
            member = await self._acquire()
            ref = reply = None
            carried = False
            try:
                if on_start is not None:
                    on_start(member)
                    on_start = None
                if iteration is not None and token is None and _BATCHING:
                    try:
                        return await self._batched(member, _Item(
                            run_id=run_id, task_name=task_name, inputs=inputs,
                            context=context, missing=missing, iteration=iteration))
                    except _MemberLost:
                        await self._replace(member)
                        continue
                bind = self.bind_for(member)
                carried = bind is not None
                reply = self.replies.key() if self.replies else None
                request = AttemptRequest(
                    run_id=run_id, agent_key=self.key, task_name=task_name, inputs=inputs,
                    context=context, missing=missing, iteration=iteration, token=sent_token,
                    bind=bind, feedback=feedback, reply=reply, start=reply)
                ref = member.handle.run.remote(request)
                if self.replies:  # and a copy on its line: ~2 ms sooner there
                    self.replies.begin(member.handle, request)
                if on_sent is not None and sent_token is not None:
                    on_sent(self, member, sent_token)
                return await first(self.replies, ref, reply)  # type: ignore[no-any-return]
            except BaseException as exc:
                if carried and not isinstance(exc, lost):
                    self._bind_again(member)
                if self.replies and ref is not None:  # what its copy began ends with it
                    self.replies.unbegin(member.handle, reply)
                if isinstance(exc, asyncio.CancelledError) and ref is not None:
                    # A cancelled run or a timeout: the remote attempt is stopped too.
                    await _cancelled(self.remote, ref, keep_late=self.keep_late)
                if not isinstance(exc, lost):
                    raise
                # Run again elsewhere: the Supervisor records what returns (a member's
                # earlier record of a hand-off never overwrites a record: record_task).
                await self._replace(member)
            finally:
                await self._release(member)
        raise RuntimeError(f"pool '{self.agent.role}': members kept dying")

    # -- batches: loop iterations go to a member together, one call per batch ----------

    async def _batched(self, member: Member, item: _Item) -> TaskOutput:
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        queued = self._queued.setdefault(id(member), (member, []))[1]
        queued.append(item)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        try:
            return await item.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if item.batch is not None:  # sent: stop its attempt in the member too
                member.handle.cancel_one.remote(item.run_id, item.batch, item.index)
            raise

    def _flush(self) -> None:
        """Send what was queued in this turn of the event loop: one call per member."""
        self._flushing = False
        queued, self._queued = self._queued, {}
        for member, items in queued.values():
            items = [i for i in items if not i.future.done()]
            if not items:
                continue
            batch = next(_batch_ids)
            for index, item in enumerate(items):
                item.batch, item.index = batch, index
            bind = self.bind_for(member)
            try:
                stream = member.handle.run_many.options(num_returns="streaming").remote(
                    BatchRequest(run_id=items[0].run_id, agent_key=self.key, batch=batch,
                                 items=[AttemptRequest(
                                     run_id=i.run_id, agent_key=self.key, task_name=i.task_name,
                                     inputs=i.inputs, context=i.context, missing=i.missing,
                                     iteration=i.iteration) for i in items],
                                 bind=bind))
            except Exception as exc:  # e.g. an item that cannot be pickled
                if bind is not None:
                    self._bind_again(member)
                for item in items:
                    item.future.set_exception(exc)
                continue
            reader = asyncio.ensure_future(self._read(stream, items, member, bind is not None))
            self._readers.add(reader)
            reader.add_done_callback(self._readers.discard)

    async def _read(self, stream: Any, items: list[_Item], member: Member,
                    carried: bool) -> None:
        failure: BaseException | None = None
        try:
            async for ref in stream:
                for index, output, error in await ref:
                    future = items[index].future
                    if future.done():
                        continue
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(output)
        except self.remote.lost:
            failure = _MemberLost()
        except Exception as exc:  # the batch call itself failed
            failure = exc
        if failure is not None and carried and not isinstance(failure, _MemberLost):
            self._bind_again(member)
        for item in items:
            if not item.future.done():
                item.future.set_exception(failure or _MemberLost())

    def hand_off(self, member: Member, run_id: str, after: str, agent_key: str,
                 task_name: str, context: dict[str, TaskOutput], token: str,
                 order: list[str], *, leads: bool = True) -> tuple[Any, bool]:
        """Queue ``task_name`` (as agent ``agent_key``: every member serves every agent of
        its run) on ``member`` behind the run of token ``after`` (see
        ``AgentActor.run_after``); returns the call's ref, and whether it carries the
        member's bind (then ``_bind_again`` if it is cancelled). Not ``leads``: nothing
        follows it in turn (its member neither records its output nor waits for that)."""
        bind, reply = self.bind_for(member), self.replies.key(token) if self.replies else None
        ref = member.handle.run_after.remote(HandOffRequest(after=after, order=order, attempt=(
            AttemptRequest(run_id=run_id, agent_key=agent_key, task_name=task_name, bind=bind,
                           context=context, token=token if leads else None, reply=reply))))
        return ref, bind is not None

    def reserve(self, member: Member) -> bool:
        """Take a slot on ``member`` for a task handed off to it, if it has one free."""
        if member.in_flight >= self.capacity or not any(m is member for m in self.members):
            return False
        member.in_flight += 1
        return True

    def reserve_any(self) -> Member | None:
        """Take a slot for a task handed off from another agent's member, on the least
        loaded member, if one is free and no dispatch already waits for one here."""
        member = min(self.members, key=lambda m: m.in_flight)
        if member.in_flight >= self.capacity or self.waiters:
            return None
        member.in_flight += 1
        return member

    def unreserve(self, member: Member) -> None:
        """Give back the slot of a hand-off that will not be adopted."""
        release = asyncio.ensure_future(self._release(member))
        self._releasing.add(release)
        release.add_done_callback(self._releasing.discard)

    async def adopt(self, member: Member, ref: Any, on_start: Callable[[Member], None] | None,
                    token: str, on_sent: Callable[[Pool, Member, str], None] | None
                    ) -> TaskOutput | None:
        """Take over a handed-off task as this pool's dispatch: its output, or None when
        it did not run (its predecessor failed there, or the member died)."""
        try:  # its slot was reserved when it was handed off (``reserve``)
            try:
                if on_start is not None:
                    on_start(member)
            except BaseException:
                self.remote.cancel(ref)
                raise
            if on_sent is not None and any(m is member for m in self.members):
                on_sent(self, member, token)
            return await first(self.replies, ref,  # type: ignore[no-any-return]
                               self.replies.key(token) if self.replies else None)
        except asyncio.CancelledError:
            await _cancelled(self.remote, ref, keep_late=self.keep_late)
            raise
        except self.remote.lost:
            await self._replace(member)
            return None
        finally:
            await self._release(member)

    async def _replace(self, member: Member) -> None:
        # Every attempt that was on the dead member lands here; one replaces it, the
        # others wait for that replacement and then retry on the pool.
        if member.replacing is not None:
            await member.replacing
            return
        if not any(m is member for m in self.members):
            return
        member.replacing = asyncio.get_running_loop().create_future()
        try:
            self.replaced += 1
            dead = [member.handle]
            for _ in range(_MAX_REPLACEMENTS):
                self.registry.forget.remote(dead)
                [handle] = await self.registry.lease.remote(LeaseRequest(
                    placement_key=self.placement_key, count=1, options=self.options,
                    agent_key=self.key, lessee=self.lessee))
                try:
                    await handle.bind.remote(self.binding)
                    break
                except self.remote.lost:
                    dead = [handle]  # a warm actor that died with its node: try another
            else:
                raise RuntimeError(f"pool '{self.agent.role}': no live member could be leased")
            index = next(i for i, m in enumerate(self.members) if m is member)
            self.members[index] = Member(handle=handle, bound=True)
        finally:
            member.replacing.set_result(None)

    def event(self, workflow: str, run_id: str) -> Event:
        # Keyed by the pool (the agent), not the run: pools outlive runs.
        return Event(kind="pool", workflow=workflow, run_id=run_id, agent_role=role_of(self.agent),
                     data={"in_flight": self.in_flight, "queued": self.waiters,
                           "size": self.size, "members": len(self.members),
                           "starting": len(self.starting), "pool": self.key})


class PoolSet:
    """Every pool of one run, keyed by agent key."""

    def __init__(self, registry: Registry, run_id: str, *, remote: Remote,
                 kept: KeptMembers | None = None, options: Any = None,
                 lessee: str | None = None, replies: Replies | None = None) -> None:
        self.registry = registry
        self.replies = replies
        self.lessee = lessee
        self.run_id = run_id
        self.options = options  # the run's ``RunOptions`` for every member it binds
        self.remote = remote
        self.kept = kept if kept is not None else KeptMembers()
        self.pools: dict[str, Pool] = {}
        self.deferred: list[Callable[[], Any]] = []  # calls ``close`` kept back

    def keep_late_replies(self) -> None:
        """The run winds down: await each attempt cancelled from now on (``replies.cancelled``)."""
        for pool in self.pools.values():
            pool.keep_late = True

    async def open(self, agents: list[Any], tasks: dict[str, Any],
                   bind_now: bool = False, shipped: bytes | None = None,
                   loops: dict[str, int] | None = None) -> None:
        """Lease the members of every agent's pool: members this Supervisor kept from its
        last run first (no registry round trip), then the registry's. Nothing is sent to
        them yet: a member's first call of the run carries its bind (``Pool.bind_for``).

        With ``bind_now`` (a task of the run has a timeout), and in a pool that leases
        members for a loop (below), every member is bound at once, and ``Member.ready``
        tells when it is up (a timeout does not count its start nor its imports).
        ``shipped``: the run's definitions as the driver pickled them, sent to members
        instead of ``tasks``.

        ``loops``: the item counts of the run's loops over static data, by task name. A
        pool that may grow leases at once the members its largest loop needs (within
        ``max_pool_size``): they start beside the first ones and take attempts once up
        (``Pool.start``), instead of being leased one by one while the loop's items
        queue."""
        backlog = loop_backlogs(tasks, loops or {}, key=agent_key)
        unique: dict[str, Any] = {}
        for agent in agents:
            unique.setdefault(agent_key(agent), agent)
        agent_map = dict(unique)
        binding = Binding(run_id=self.run_id, agents=agent_map,
                          tasks=shipped if shipped is not None else tasks, options=self.options)
        wanted = []
        kept_for = {}
        for key, agent in unique.items():  # members that served this very agent first
            placement_key, _ = placement_options(agent)
            kept_for[key] = self.kept.take((placement_key, key))
        for key, agent in unique.items():
            placement_key, options = placement_options(agent)
            size = getattr(agent, "pool_size", 1)
            kept = kept_for[key]
            if len(kept) < size:  # then any kept member of the same placement
                kept += self.kept.take_placed(placement_key, size - len(kept))
            handles, spare = kept[:size], kept[size:]
            if spare:
                self.registry.give_back.remote(placement_key, spare, agent_key=key)
            count = size - len(handles) + needed(
                backlog.get(key, 0), capacity=getattr(agent, "max_concurrency", 64), have=size,
                most=getattr(agent, "max_pool_size", 0) or 0)
            lease = (self.registry.lease.remote(LeaseRequest(
                placement_key=placement_key, count=count, options=options,
                agent_key=key, lessee=self.lessee)) if count else None)
            wanted.append((key, agent, placement_key, options, handles, lease))
        for key, agent, placement_key, options, handles, lease in wanted:
            if lease is not None:
                handles = handles + await lease
            size = getattr(agent, "pool_size", 1)
            handles, extra = handles[:size], handles[size:]
            members = [Member(handle=h) for h in handles]
            if bind_now or extra:  # (a loop will fill them: warm them before it)
                for member in members:
                    member.bound = True
                    member.ready = asyncio.ensure_future(member.handle.bind.remote(
                        dataclasses.replace(binding, prewarm="wait")))
                    member.ready.add_done_callback(
                        functools.partial(_bind_done, member, self.remote.lost))
            self.pools[key] = Pool(
                key=key, agent=agent, members=members,
                capacity=getattr(agent, "max_concurrency", 64), placement_key=placement_key,
                options=options, registry=self.registry, remote=self.remote, lessee=self.lessee,
                binding=binding, max_size=getattr(agent, "max_pool_size", 0) or 0,
                replies=self.replies)
            for member in members:
                if member.ready is not None:
                    member.ready.add_done_callback(self.pools[key].wake)
            self.pools[key].start(extra)

    def pool_for(self, agent: Any) -> Pool:
        return self.pools[agent_key(agent)]

    async def close(self, *, defer: bool = False) -> None:
        """Keep this run's members for this Supervisor's next run (up to a bound); give
        the rest back to the registry. ``defer``: the calls that tell them wait for
        ``release`` (the Supervisor sends the run's result first: it does not wait on
        them)."""
        calls: list[Callable[[], Any]] = []
        for pool in self.pools.values():
            pool.closed = True
            handles = [m.handle for m in pool.members]
            starting = [m.handle for m in pool.starting]  # bound: told too
            calls += [functools.partial(h.unbind.remote, self.run_id) for h in handles + starting]
            # Members it grew go back to the registry (and are reaped once idle).
            size = getattr(pool.agent, "pool_size", 1)
            back = (self.kept.keep((pool.placement_key, pool.key), handles[:size])
                    + handles[size:] + starting)
            if back:
                calls.append(functools.partial(self.registry.give_back.remote,
                                               pool.placement_key, back, agent_key=pool.key))
        self.deferred += calls
        if not defer:
            self.release()

    def release(self) -> None:
        """Make the calls ``close(defer=True)`` kept back."""
        calls, self.deferred = self.deferred, []
        for call in calls:
            call()


def _bind_done(member: Member, lost: tuple[type[BaseException], ...],
               future: asyncio.Future[Any]) -> None:
    error = None if future.cancelled() else future.exception()
    # A dead member shows on its next call; any other failure must show there too, so
    # that call carries the bind again (and fails with the real error).
    if future.cancelled() or (error is not None and not isinstance(error, lost)):
        member.bound = False
