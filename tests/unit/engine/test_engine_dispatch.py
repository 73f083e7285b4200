"""Dispatch (``engine/dispatch.py``): a run's pools leased from a ``FakeRegistry``, the
least-loaded member, backpressure at ``max_concurrency``, a dead member replaced, the
binding sent once per member, members kept or given back at the end. No Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.engine.dispatch import PoolSet
from ray_orch.engine.ports import KeptMembers
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, FakeRemote


class Recording(FakeHandle):
    """A handle that records the records each call carried."""

    calls: list[tuple[str, tuple]] = []

    def _call(self, name, args, kwargs, streaming):
        Recording.calls.append((name, args))
        return super()._call(name, args, kwargs, streaming)


class RecordingRegistry(FakeRegistry):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.pool.starter.start_member = self._start  # type: ignore[method-assign]

    def _start(self, options):
        from ray_orch.engine.member import AgentMember

        handle = Recording(AgentMember())
        self.created.append(handle)
        return handle


async def open_pools(agent: Agent, tasks: dict[str, Task], registry: FakeRegistry,
                     kept: KeptMembers | None = None) -> PoolSet:
    pools = PoolSet(FakeHandle(registry), "k1", remote=FakeRemote(), kept=kept)
    await pools.open([agent], tasks)
    return pools


def test_attempts_spread_over_members_and_wait_beyond_their_capacity(stub):
    stub.latency = 0.2
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, pool_size=2, max_concurrency=1)
    tasks = {f"t{i}": Task(name=f"t{i}", description=f"Item {i}", agent=agent)
             for i in range(4)}
    registry = FakeRegistry()
    peak = 0

    async def go():
        nonlocal peak
        pools = await open_pools(agent, tasks, registry)
        pool = pools.pool_for(agent)
        jobs = [asyncio.ensure_future(pool.submit("k1", name, None, {}, {}, None))
                for name in tasks]
        while not all(j.done() for j in jobs):
            peak = max(peak, pool.in_flight)
            assert pool.in_flight <= 2
            await asyncio.sleep(0.01)
        await pools.close()
        return [j.result().raw for j in jobs], pool

    outputs, _ = asyncio.run(go())
    assert outputs == ["ok"] * 4 and peak == 2
    # Each member ran two: least loaded first, then whoever freed a slot.
    assert sorted(h.target.completed for h in registry.created) == [2, 2]


def test_a_members_first_call_carries_the_binding_and_later_ones_do_not(stub):
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"a": Task(name="a", description="First", agent=agent),
             "b": Task(name="b", description="Second", agent=agent)}
    registry = RecordingRegistry()
    Recording.calls = []

    async def go():
        pools = await open_pools(agent, tasks, registry)
        pool = pools.pool_for(agent)
        await pool.submit("k1", "a", None, {}, {}, None)
        await pool.submit("k1", "b", None, {}, {}, None)

    asyncio.run(go())
    runs = [args for name, args in Recording.calls if name == "run"]
    assert len(runs) == 2 and all(len(args) == 1 for args in runs)  # one record each
    assert runs[0][0].bind is not None and runs[0][0].bind.tasks.keys() == {"a", "b"}
    assert runs[1][0].bind is None
    assert not [name for name, _ in Recording.calls if name == "bind"]


def test_a_dead_member_is_replaced_and_the_attempt_runs_elsewhere(stub):
    stub.latency = 0.3
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"a": Task(name="a", description="Survive", agent=agent)}
    registry = FakeRegistry()

    async def go():
        pools = await open_pools(agent, tasks, registry)
        pool = pools.pool_for(agent)
        job = asyncio.ensure_future(pool.submit("k1", "a", None, {}, {}, None))
        while stub.count("Survive") == 0:
            await asyncio.sleep(0.01)
        dead = pool.members[0].handle
        dead.kill()
        return await job, pool, dead

    output, pool, dead = asyncio.run(go())
    assert output.raw == "ok" and pool.replaced == 1
    assert registry.forgotten == [dead]
    assert pool.members[0].handle is registry.created[1]
    assert stub.count("Survive") == 2  # asked again on the new member


def test_a_pool_grows_while_attempts_queue_up_to_its_max(stub):
    stub.latency = 0.2
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=1,
                  max_pool_size=3)
    tasks = {f"t{i}": Task(name=f"t{i}", description=f"Item {i}", agent=agent)
             for i in range(6)}
    registry = FakeRegistry()

    async def go():
        pools = await open_pools(agent, tasks, registry)
        pool = pools.pool_for(agent)
        await asyncio.gather(*(pool.submit("k1", n, None, {}, {}, None) for n in tasks))
        await pools.close()
        return pool

    pool = asyncio.run(go())
    assert len(pool.members) == 3 and pool.grown == 2
    # The grown members went back to the registry; the first is kept by the Supervisor.
    assert registry.size() == 2


def test_members_are_kept_for_the_next_run_and_the_rest_given_back(stub):
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, pool_size=3)
    tasks = {"a": Task(name="a", description="Step", agent=agent)}
    registry = FakeRegistry()
    kept = KeptMembers(limit=2)

    async def go():
        pools = await open_pools(agent, tasks, registry, kept)
        await pools.pool_for(agent).submit("k1", "a", None, {}, {}, None)
        await pools.close()

    asyncio.run(go())
    assert sum(len(v) for v in kept.held.values()) == 2
    assert registry.size() == 1
    # Every member was told the run ended.
    assert all("k1" in h.target.unbound for h in registry.created)
