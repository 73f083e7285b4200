"""``Task(timeout=s)`` bounds the task's own work: it counts from when a member takes the
task and is up. Waiting for a free slot (backpressure) and a fresh member's process start
do not count; a slow call still times out (see test_batching, test_resilience, test_handoff).
"""

from __future__ import annotations

import itertools

import pytest

from ray_orch import Agent, Process, Task, TaskTimeoutError

pytestmark = pytest.mark.usefixtures("ray_session")

# A placement no other test uses: the registry has no warm member for it, so the run
# starts a new actor process (about 0.6 s here, more under load).
_fresh_cpus = itertools.count(1)


def fresh_placement() -> float:
    return round(0.0030 + 0.0001 * next(_fresh_cpus), 4)


def test_waiting_for_a_free_slot_does_not_count(stub):
    stub.add_rule(match="Handle item", latency=0.3)
    agent = Agent(role="Serial", goal="One at a time", llm=stub.llm, max_concurrency=1)
    warm = {"warm": Task(description="Warm up", agent=agent)}
    Process(tasks=warm, agents=[agent]).workflow()
    tasks = {"fan": Task(description="Handle item {item} now", agent=agent, task_type="loop",
                         loop_data=list(range(4)), timeout=0.8)}
    result = Process(tasks=tasks, agents=[agent]).workflow()
    handled = stub.requests_matching("Handle item")
    assert len(result["fan"].iterations) == 4 and len(handled) == 4
    # One at a time: the last iteration waited for the three before it, longer than its
    # timeout, and still ran to the end.
    assert max(r.t_start for r in handled) - min(r.t_start for r in handled) > 0.8


def test_a_fresh_members_start_does_not_count(stub):
    agent = Agent(role="Cold", goal="Start", llm=stub.llm, num_cpus=fresh_placement())
    tasks = {"one": Task(description="Answer once", agent=agent, timeout=0.5)}
    output = Process(tasks=tasks, agents=[agent]).workflow()["one"]
    [request] = stub.requests_matching("Answer once")
    # From when the task was ready to when its call reached the model, the member's
    # process started (the task waits for it, or waits in it): longer than the timeout.
    ready_at = output.metadata["started_at"] - output.metadata["queue_s"]
    assert request.t_start - ready_at > 0.5


def test_a_slow_call_on_a_fresh_member_still_times_out(stub):
    stub.add_rule(match="Answer slowly", latency=5.0)
    agent = Agent(role="ColdSlow", goal="Start", llm=stub.llm, num_cpus=fresh_placement())
    tasks = {"one": Task(description="Answer slowly", agent=agent, timeout=0.5,
                         max_retries=0)}
    with pytest.raises(TaskTimeoutError, match="one"):
        Process(tasks=tasks, agents=[agent]).workflow()
    [request] = stub.requests_matching("Answer slowly")
    assert request.t_start is not None
