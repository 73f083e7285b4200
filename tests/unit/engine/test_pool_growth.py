"""Pools that follow the backlog (``Agent(max_pool_size=...)``), without Ray: the run
loop given the in-process fakes of its ports, members calling the stub over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from ray_orch import Agent, Task
from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.engine.ports import KeptMembers
from ray_orch.engine.run import Run, RunSpec
from ray_orch.testing.fakes import FakeRegistry, fake_services


def run_loop(stub, agent: Agent, items: int):
    registry, kept = FakeRegistry(), KeptMembers()
    task = Task(name="each", description="Handle {item}", agent=agent, task_type="loop",
                loop_data=[f"item{i}" for i in range(items)])
    spec = RunSpec(run_id="r1", workflow="w", mode="workflow", tasks=[task], agents=[agent],
                   metrics=False)

    async def go():
        return await Run(spec, emit=lambda e: None,
                         services=fake_services(registry=registry, kept=kept)).execute()

    result = asyncio.run(go())
    assert result.error is None, result.error
    assert len(result.outputs["each"].iterations) == items
    return registry, kept


def most_at_once(stub) -> int:
    edges = sorted([(r.t_start, 1) for r in stub.requests] + [(r.t_end, -1) for r in stub.requests])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_a_pool_grows_while_attempts_queue_and_shrinks_back_after_the_run(stub):
    stub.latency = 0.05
    agent = Agent(role="Worker", goal="Work", llm=stub.llm, max_concurrency=2,
                  max_pool_size=3)
    registry, kept = run_loop(stub, agent, 40)
    assert len(registry.created) == 3  # grew from 1 to max_pool_size, no further
    assert all(h._target.completed > 0 for h in registry.created)  # each one worked
    assert most_at_once(stub) <= 3 * 2  # max_concurrency held per member
    # After the run: pool_size members kept, the grown ones back in the registry.
    assert sum(len(v) for v in kept.held.values()) == 1
    assert sum(len(v) for v in registry.idle.values()) == 2


def test_a_pool_without_max_pool_size_keeps_its_size(stub):
    stub.latency = 0.02
    agent = Agent(role="Worker", goal="Work", llm=stub.llm, max_concurrency=2)
    registry, _ = run_loop(stub, agent, 12)
    assert len(registry.created) == 1
    assert most_at_once(stub) <= 2


@pytest.mark.parametrize("size", [0, "4"])
def test_max_pool_size_below_pool_size_or_not_an_int_is_refused(size):
    with pytest.raises(InvalidTaskFieldError, match="max_pool_size") as err:
        Agent(role="Worker", goal="Work", pool_size=2, max_pool_size=size or 1)
    assert err.value.field == "max_pool_size"
