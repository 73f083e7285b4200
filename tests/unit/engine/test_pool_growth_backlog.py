"""Growth sized to the backlog (``engine/dispatch.py`` ``Pool``, ``engine/growth.py``),
without Ray: the members a backlog needs are leased in one call and bound at once; a
member still starting takes no attempt while the members up go on; a loop over static
data leases its members when the run opens. In-process fakes of the ports, members
calling the stub over HTTP."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.engine.dispatch import PoolSet
from ray_orch.engine.member import AgentMember
from ray_orch.engine.ports import KeptMembers
from ray_orch.engine.run import Run, RunSpec
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, FakeRemote, fake_services


class Starting(AgentMember):
    """A member whose process is up only once ``gate`` is set: its bind waits for it,
    and it records every call it got before that."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.calls: list[tuple[str, bool]] = []  # (method, up when called)

    async def bind(self, binding):
        self.calls.append(("bind", self.gate.is_set()))
        await self.gate.wait()
        return await super().bind(binding)

    async def run(self, request):
        self.calls.append(("run", self.gate.is_set()))
        return await super().run(request)

    async def run_many(self, request):
        self.calls.append(("run_many", self.gate.is_set()))
        async for part in super().run_many(request):
            yield part


class Leases(FakeRegistry):
    """Records every lease; members after the first ``up`` ones start behind a gate
    (or die at once, with ``dead``)."""

    def __init__(self, *, up: int = 1, dead: bool = False) -> None:
        super().__init__()
        self.requests: list = []
        self.up, self.dead = up, dead
        self.gate: asyncio.Event | None = None
        self.pool.starter.start_member = self._start  # type: ignore[method-assign]

    def lease(self, request):
        self.requests.append(request)
        return super().lease(request)

    def _start(self, options):
        if len(self.created) < self.up:
            handle = FakeHandle(AgentMember())
        else:
            if self.gate is None:
                self.gate = asyncio.Event()
            handle = FakeHandle(Starting(self.gate))
            if self.dead:
                handle.kill()
        self.created.append(handle)
        return handle


def tasks_for(agent: Agent, count: int) -> dict[str, Task]:
    return {f"t{i}": Task(name=f"t{i}", description=f"Item {i}", agent=agent)
            for i in range(count)}


async def settle(condition, limit: float = 30.0) -> None:
    """Wait (generously) until ``condition()`` holds."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), limit)


async def opened(registry: Leases, agent: Agent, tasks: dict[str, Task], *,
                 lessee: str | None = None, bind_now: bool = False):
    """The run's pools over ``registry`` (opened for ``tasks``), and ``agent``'s pool."""
    pools = PoolSet(FakeHandle(registry), "k1", remote=FakeRemote(), lessee=lessee)
    await pools.open([agent], tasks, bind_now=bind_now)
    return pools, pools.pool_for(agent)


async def submit_all(pool, tasks: dict[str, Task]) -> list:
    """Every task's attempt on ``pool`` at once; their outputs."""
    return await asyncio.gather(*(pool.submit("k1", n, None, {}, {}, None) for n in tasks))


def test_the_members_a_backlog_needs_are_leased_in_one_call_not_one_by_one(stub):
    stub.latency = 0.05
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=2,
                  max_pool_size=4)
    tasks = tasks_for(agent, 8)
    registry = Leases(up=4)

    async def go():
        pools, pool = await opened(registry, agent, tasks, lessee="sup-1")
        await submit_all(pool, tasks)
        await pools.close()
        return pool

    pool = asyncio.run(go())
    # The first lease opened the pool (1 member); 6 attempts waited behind its 2
    # slots: one lease of the 3 members they need, within max_pool_size.
    assert [r.count for r in registry.requests] == [1, 3]
    # Held by the Supervisor: reclaimed if it is lost.
    assert all(r.lessee == "sup-1" for r in registry.requests)
    assert len(pool.members) == 4 and pool.grown == 3 and not pool.starting
    assert all(h.target.completed > 0 for h in registry.created)
    assert registry.size() == 3  # the grown ones went back to the registry


def test_a_member_still_starting_takes_nothing_while_the_members_up_go_on(stub):
    stub.latency = 0.02
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=2,
                  max_pool_size=3)
    tasks = tasks_for(agent, 6)
    registry = Leases(up=1)

    async def go():
        pools, pool = await opened(registry, agent, tasks)
        outputs = await submit_all(pool, tasks)
        # Every attempt ran on the member that was up; the two leased for the backlog
        # are still starting, bound but not in the pool.
        assert [o.raw for o in outputs] == ["ok"] * 6
        assert registry.created[0].target.completed == 6
        assert len(pool.starting) == 2 and len(pool.members) == 1 and pool.grown == 0
        registry.gate.set()  # their processes are up
        await settle(lambda: not pool.starting)
        assert len(pool.members) == 3 and pool.grown == 2
        await submit_all(pool, tasks)
        await pools.close()
        return pool

    asyncio.run(go())
    for handle in registry.created[1:]:
        calls = handle.target.calls
        assert calls[0] == ("bind", False)  # bound as soon as leased
        assert all(up for name, up in calls if name != "bind")  # no call before it was up
        assert handle.target.completed > 0  # and worked once it was


def test_a_member_that_dies_while_starting_is_forgotten_and_the_pool_goes_on(stub):
    stub.latency = 0.02
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=1,
                  max_pool_size=2)
    tasks = tasks_for(agent, 4)
    registry = Leases(up=1, dead=True)

    async def go():
        pools, pool = await opened(registry, agent, tasks)
        outputs = await submit_all(pool, tasks)
        await pools.close()
        return pool, outputs

    pool, outputs = asyncio.run(go())
    assert [o.raw for o in outputs] == ["ok"] * 4
    dead = registry.created[1:]
    assert dead and set(registry.forgotten) == set(dead)  # each one reported dead
    assert len(pool.members) == 1 and pool.grown == 0 and not pool.starting
    # Growth gives up after a few deaths in a row rather than leasing forever.
    assert len(dead) <= 3


def test_members_starting_when_the_run_ends_go_back_to_the_registry(stub):
    stub.latency = 0.02
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=1,
                  max_pool_size=3)
    tasks = tasks_for(agent, 3)
    registry = Leases(up=1)

    async def go():
        pools, pool = await opened(registry, agent, tasks)
        await submit_all(pool, tasks)
        assert len(pool.starting) == 2
        await pools.close()
        registry.gate.set()  # they come up after the run ended
        await settle(lambda: not pool.starting)
        return pool

    pool = asyncio.run(go())
    assert len(pool.members) == 1 and pool.grown == 0
    starting = registry.created[1:]
    assert registry.size() == 2 and all(h in registry.idle[pool.placement_key] for h in starting)
    assert all("k1" in h.target.unbound for h in starting)  # told the run ended
    assert not any(h.target.completed for h in starting)


def test_a_loop_over_static_data_leases_its_members_when_the_run_opens(stub):
    stub.latency = 0.02
    agent = Agent(role="Worker", goal="Work", llm=stub.llm, max_concurrency=4,
                  max_pool_size=3)
    task = Task(name="each", description="Handle {item}", agent=agent, task_type="loop",
                loop_data=[f"item{i}" for i in range(10)])
    spec = RunSpec(run_id="r1", workflow="w", mode="workflow", tasks=[task], agents=[agent],
                   metrics=False)
    registry = Leases(up=3)

    async def go():
        return await Run(spec, emit=lambda e: None,
                         services=fake_services(registry=registry, kept=KeptMembers())).execute()

    result = asyncio.run(go())
    assert result.error is None, result.error
    assert len(result.outputs["each"].iterations) == 10
    # One lease, when the run opened: 10 items at 4 a member need 3 members.
    assert [r.count for r in registry.requests] == [3]
    assert all(h.target.completed > 0 for h in registry.created)


def test_a_member_bound_at_once_takes_attempts_only_once_it_is_up(stub):
    stub.latency = 0.02
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, pool_size=2, max_concurrency=4)
    tasks = tasks_for(agent, 3)
    registry = Leases(up=1)

    async def go():
        pools, pool = await opened(registry, agent, tasks, bind_now=True)  # both: ``ready``
        await submit_all(pool, tasks)
        starting = registry.created[1].target
        assert starting.completed == 0 and [n for n, _ in starting.calls] == ["bind"]
        registry.gate.set()
        await settle(lambda: pool.members[1].ready.done())
        await submit_all(pool, tasks)
        await pools.close()

    asyncio.run(go())
    assert registry.created[0].target.completed >= 3
    assert registry.created[1].target.completed > 0
