"""AgentPool, the guide's "Resource Pooling": futures, least-loaded dispatch, backpressure."""

from __future__ import annotations

import time

import pytest

from ray_orch import AgentPool, Task, TaskFailedError

pytestmark = pytest.mark.usefixtures("ray_session")


def test_guide_template_pool_runs_tasks_concurrently_on_every_member(stub):
    pool = AgentPool(agent_template={"role": "Data Processor", "goal": "Process data efficiently",
                                     "llm": stub.llm}, pool_size=3)
    try:
        assert len(pool.agents) == 3
        # warm every member (its first call imports the model client), then measure
        for f in [pool.execute_task(Task(description=f"Warm up {i}")) for i in range(3)]:
            f.result(timeout=60)
        stub.clear()
        stub.latency = 0.5
        tasks = [Task(description=f"Process record {i}") for i in range(6)]
        futures = [pool.execute_task(t) for t in tasks]
        outputs = [f.result(timeout=60) for f in futures]
        assert [o.agent for o in outputs] == ["Data Processor"] * 6
        assert len({o.metadata["actor_pid"] for o in outputs}) == 3  # spread over members
        assert all(t.status == "completed" and t.result is not None for t in tasks)
        starts = sorted(r.t_start for r in stub.requests)
        assert starts[-1] - starts[0] < 0.4  # all six in flight at once
    finally:
        pool.close()


def test_backpressure_when_every_member_is_full(stub):
    stub.latency = 0.3
    pool = AgentPool({"role": "Narrow", "goal": "One at a time", "llm": stub.llm},
                     pool_size=1, max_concurrency=1)
    try:
        started = time.perf_counter()
        first = pool.execute_task(Task(description="Job one"))
        second = pool.execute_task(Task(description="Job two"))  # blocks until one finishes
        waited = time.perf_counter() - started
        assert first.done() and waited >= 0.25
        second.result(timeout=30)
        one, two = stub.requests_matching("Job one")[0], stub.requests_matching("Job two")[0]
        assert two.t_start >= one.t_end
        assert pool.in_flight == 0
    finally:
        pool.close()


def test_failed_task_surfaces_through_the_future(stub):
    stub.add_rule(match="Doomed", fault="401")
    pool = AgentPool({"role": "Fragile", "goal": "Try", "llm": stub.llm}, pool_size=1)
    try:
        task = Task(description="Doomed job")
        with pytest.raises(TaskFailedError):
            pool.execute_task(task).result(timeout=30)
        assert task.status == "failed"
    finally:
        pool.close()
