"""A cancelled run keeps what was done before the cancel reached it: an attempt whose
reply came in as the run was cancelled, or whose member had finished it when the cancel
got there. No Ray: members whose replies the test sends (as a member's reply is in
flight on the cluster while the Supervisor cancels)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ray_orch import Agent, Task
from ray_orch.core.errors import RunCancelledError
from ray_orch.core.output import TaskOutput
from ray_orch.engine.run import Run
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, fake_services, spec_of

pytestmark = pytest.mark.filterwarnings("error")


class Reply:
    """An attempt's reply, awaitable like a Ray ``ObjectRef``: each ``await`` waits on a
    future of its own, so a cancelled waiter does not cancel the attempt's reply."""

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def __await__(self):
        return asyncio.shield(self.future).__await__()


class HeldMember(FakeHandle):
    """A member whose attempts (``run``) answer only when the test sets their reply."""

    def __init__(self, target: Any, replies: list[Reply]) -> None:
        super().__init__(target)
        self.replies = replies

    def _call(self, name, args, kwargs, streaming):
        if name != "run":
            return super()._call(name, args, kwargs, streaming)
        reply = Reply()
        self.replies.append(reply)
        return reply


def held_registry(replies: list[Reply]) -> FakeRegistry:
    registry = FakeRegistry()

    def start(options):
        from ray_orch.engine.member import AgentMember

        handle = HeldMember(AgentMember(), replies)
        registry.created.append(handle)
        return handle

    registry.pool.starter.start_member = start  # type: ignore[method-assign]
    return registry


def chain(stub) -> tuple[list[Task], Agent]:
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    return [Task(name="quick", description="Quick step", agent=agent),
            Task(name="after", description="After step", agent=agent, context=["quick"])], agent


def cancelled_run(stub, reply_then_cancel: bool):
    replies: list[Reply] = []
    tasks, agent = chain(stub)

    async def go():
        runner = Run(spec_of(tasks, [agent]), emit=lambda e: None,
                     services=fake_services(registry=held_registry(replies)))
        job = asyncio.ensure_future(runner.execute())
        while not replies:
            await asyncio.sleep(0.005)
        done = TaskOutput(raw="quick", agent="Worker")
        if reply_then_cancel:  # in one turn: the reply is in, the run not told yet
            replies[0].future.set_result(done)
            job.cancel()
        else:  # the cancel first: the member's reply arrives during the wind-down
            job.cancel()
            while not runner.winding_down:
                await asyncio.sleep(0)
            replies[0].future.set_result(done)
        return await job

    return asyncio.run(go())


@pytest.mark.parametrize("reply_then_cancel", [True, False],
                         ids=["reply-then-cancel", "cancel-then-reply"])
def test_a_cancelled_run_keeps_an_output_done_before_the_cancel_reached_it(
        stub, reply_then_cancel):
    result = cancelled_run(stub, reply_then_cancel)

    assert isinstance(result.error, RunCancelledError)
    assert result.outputs["quick"].raw == "quick"
    assert result.statuses == {"quick": "completed", "after": "pending"}
    assert stub.count("After step") == 0
