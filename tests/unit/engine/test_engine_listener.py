"""The run's listener (``engine/listener.py``'s ``RunListener``, which the Supervisor
wraps): token batches in each member's order, whatever order they arrive in; a run's
tokens streamed from fake members to the driver's events. No Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.engine.listener import RunListener
from ray_orch.engine.messages import TokenBatch, ToolQuestion
from ray_orch.testing.fakes import FakeHandle, run_on_fakes, spec_of


def batch(number: int, text: str, *, member: str = "m1", run: str = "k1") -> TokenBatch:
    return TokenBatch(run_id=run, member=member, number=number,
                      events=[{"task": "t", "data": {"text": text}}])


def following() -> tuple[RunListener, list]:
    listener, seen = RunListener(), []
    listener.follow(members_key="k1", workflow="w", run_id="r1", emit=seen.append)
    return listener, seen


def test_batches_are_delivered_in_each_members_order():
    listener, seen = following()
    for number, text in [(2, "c"), (0, "a"), (3, "d"), (1, "b")]:
        listener.push(batch(number, text))
    assert [e.data["text"] for e in seen] == ["a", "b", "c", "d"]
    assert all(e.kind == "token" and e.run_id == "r1" and e.workflow == "w" for e in seen)


def test_members_are_ordered_apart():
    listener, seen = following()
    listener.push(batch(1, "x1", member="x"))
    listener.push(batch(0, "y0", member="y"))  # y's first: out at once, x still waits
    assert [e.data["text"] for e in seen] == ["y0"]
    listener.push(batch(0, "x0", member="x"))
    assert [e.data["text"] for e in seen] == ["y0", "x0", "x1"]


def test_batches_of_another_run_or_after_the_end_are_dropped():
    listener, seen = following()
    listener.push(batch(0, "other", run="k2"))
    listener.stop()
    listener.push(batch(0, "late"))
    assert seen == []


def test_a_new_run_starts_numbering_again():
    listener, seen = following()
    listener.push(batch(0, "a"))
    listener.follow(members_key="k2", workflow="w", run_id="r2", emit=seen.append)
    listener.push(batch(0, "b", run="k2"))
    assert [(e.run_id, e.data["text"]) for e in seen] == [("r1", "a"), ("r2", "b")]


def test_a_tool_question_without_a_run_is_refused():
    listener = RunListener()
    answer = asyncio.run(listener.ask_tool(ToolQuestion(run_id="k1", task="t", tool="pay",
                                                        arguments={})))
    assert answer["answer"] == "reject" and "ended" in answer["reason"]
    assert listener.answer("no-such-request", {"answer": "approve"}) is False


def test_pushes_through_a_handle_arrive_like_the_supervisors():
    listener, seen = following()
    handle = FakeHandle(listener)

    async def go():
        await asyncio.gather(handle.push.remote(batch(1, "b")), handle.push.remote(batch(0, "a")))

    asyncio.run(go())
    assert [e.data["text"] for e in seen] == ["a", "b"]


def test_a_runs_tokens_reach_its_events_through_the_listener(stub):
    stub.reply = "one two three four"
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="draft", description="Draft it", agent=writer)]
    result, events = run_on_fakes(spec_of(tasks, [writer], tokens=True, stream=True),
                                  listener=RunListener())
    assert result.error is None
    tokens = [e for e in events if e.kind == "token"]
    assert tokens and all(e.task == "draft" for e in tokens)
    assert "".join(e.data["text"] for e in tokens) == "one two three four"
    # Every piece arrived before the task's output did.
    finished = next(i for i, e in enumerate(events) if e.kind == "task_finished")
    assert events.index(tokens[-1]) < finished
