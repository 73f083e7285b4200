"""Loop iterations travel to a member in batches (one Ray call for many, outputs streamed
back as they finish). Each iteration must still behave as if sent alone: its own
failure, its own timeout, its own cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from ray_orch import Agent, Process, RunCancelledError, Task, TaskTimeoutError
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")


def left_by_client(requests, within: float = 10.0) -> bool:
    """Whether the stub saw the client give up on every one of these requests (an
    attempt cancelled in its member closes its connection), polled up to ``within`` s."""
    assert requests
    deadline = time.monotonic() + within
    while any(r.t_end is None for r in requests):
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return all(r.status is None for r in requests)


def item_of(prompt: str) -> str:
    return prompt.split("Handle item ")[1].split()[0]


def test_each_iteration_fails_on_its_own(stub):
    stub.add_rule(match="Handle item 3 ", fault="401")  # not retryable
    stub.add_rule(match="Handle item", reply=lambda r: f"done {item_of(r.prompt)}")
    agent = Agent(role="Chunker", goal="Chunk", llm=stub.llm, pool_size=2)
    tasks = {"fan": Task(description="Handle item {item} now", agent=agent, task_type="loop",
                         loop_data=list(range(20)), max_retries=0)}
    with pytest.raises(Exception, match="AuthenticationError") as info:
        Process(tasks=tasks, agents=[agent]).workflow()
    assert "fan" in str(info.value)
    assert stub.count(lambda r: "Handle item 3 " in r.prompt) == 1  # never retried


def test_a_timed_out_iteration_is_stopped_in_its_member():
    with StubLLMServer(hang_seconds=60) as stub:
        stub.add_rule(match="Handle item 2 ", fault="timeout")  # answers only after 60 s
        agent = Agent(role="Chunker", goal="Chunk", llm=stub.llm)
        warm = {"warm": Task(description="Warm up", agent=agent)}
        Process(tasks=warm, agents=[agent]).workflow()  # member started: timeouts below
        tasks = {"fan": Task(description="Handle item {item} now", agent=agent,
                             task_type="loop", loop_data=list(range(5)), timeout=2.0)}
        with pytest.raises(TaskTimeoutError):
            Process(tasks=tasks, agents=[agent]).workflow()
        hung = stub.requests_matching("Handle item 2 ")
        assert len(hung) == 1 and stub.count("Handle item") == 5
        assert left_by_client(hung)


def test_cancel_stops_every_iteration_of_a_batch(once_seen):
    with StubLLMServer(hang_seconds=60) as stub:
        stub.add_rule(match="Handle item", fault="timeout")
        agent = Agent(role="Chunker", goal="Chunk", llm=stub.llm, pool_size=2)
        tasks = {"fan": Task(description="Handle item {item} now", agent=agent,
                             task_type="loop", loop_data=list(range(50)))}
        process = Process(tasks=tasks, agents=[agent])
        with once_seen(stub, "Handle item", 50, process.cancel), \
                pytest.raises(RunCancelledError):
            process.workflow()
        assert left_by_client(stub.requests_matching("Handle item"))
