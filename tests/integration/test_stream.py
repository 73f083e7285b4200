"""``Process.stream()`` / ``astream()``: typed events as a run happens, token deltas while
the model answers, cancel on break."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from ray_orch import Agent, Process, StreamEvent, Task, WorkflowDefinitionError

pytestmark = pytest.mark.usefixtures("ray_session")


def customer_service(stub) -> tuple[Process, dict[str, Task]]:
    support = Agent(role="Support", goal="Handle inquiries", llm=stub.llm)
    billing = Agent(role="Billing", goal="Handle payments", llm=stub.llm)
    tech = Agent(role="Technical", goal="Solve technical issues", llm=stub.llm)
    tasks = {
        "categorize": Task(description="Categorize customer inquiry: charged twice",
                           agent=support, task_type="decision",
                           condition={"technical": ["tech_support"],
                                      "billing": ["billing_support"]}),
        "tech_support": Task(description="Resolve technical issue", agent=tech,
                             next_tasks=["send_confirmation"]),
        "billing_support": Task(description="Handle billing inquiry", agent=billing,
                                next_tasks=["send_confirmation"]),
        "send_confirmation": Task(description="Send confirmation to the customer",
                                  agent=support),
    }
    return Process(tasks=tasks, agents=[support, billing, tech], name="support"), tasks


def test_the_customer_service_workflow_streams_in_order_with_tokens(stub):
    stub.add_rule(match="Categorize", reply="billing")
    stub.add_rule(match="billing inquiry", reply="We refunded the second charge today.")
    stub.add_rule(match="confirmation", reply="Confirmation sent to the customer by email.")
    process, _ = customer_service(stub)
    events = list(process.stream(tokens=True))
    assert all(isinstance(ev, StreamEvent) for ev in events)
    kinds = [ev.kind for ev in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    completed = [ev.task for ev in events if ev.kind == "task_completed"]
    assert completed == ["categorize", "billing_support", "send_confirmation"]
    [decision] = [ev for ev in events if ev.kind == "decision"]
    assert decision.task == "categorize" and decision.route == "billing"
    # Dependency order: the route is known before its branch starts.
    started = [ev.task for ev in events if ev.kind == "task_started"]
    assert started == ["categorize", "billing_support", "send_confirmation"]
    assert kinds.index("decision") < [i for i, ev in enumerate(events)
                                      if ev.kind == "task_started"][1]
    # The unrouted branch never starts: skipped, and never asked of the model.
    assert [ev.task for ev in events if ev.kind == "task_skipped"] == ["tech_support"]
    assert stub.count("Resolve technical issue") == 0
    # Each task's deltas, in order, make its final output; each came before it completed.
    results = events[-1].results
    assert results is not None and set(results) == set(completed)
    for name in completed:
        pieces = [ev.text for ev in events if ev.kind == "token" and ev.task == name]
        assert len(pieces) > 1 or name == "categorize"
        assert "".join(pieces) == results[name].raw
        last_token = max(i for i, ev in enumerate(events) if ev.kind == "token" and ev.task == name)
        done = next(i for i, ev in enumerate(events)
                    if ev.kind == "task_completed" and ev.task == name)
        assert last_token < done
    assert all(ev.run_id == events[0].run_id for ev in events)
    assert process.results["send_confirmation"].raw == results["send_confirmation"].raw


def test_tokens_reach_the_driver_while_the_model_is_still_answering(stub):
    stub.reply = " ".join(f"word{i}" for i in range(20))
    stub.stream_interval = 0.05  # the answer takes about a second to send
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    process = Process(tasks={"a": Task(description="Write", agent=agent)})
    seen = []
    for ev in process.stream(tokens=True):
        if ev.kind == "token":
            seen.append((time.time(), ev.text))
    [request] = stub.requests
    assert len(seen) == 20 and len(request.chunk_times) == 20
    # The first piece arrived long before the model's last one was sent.
    assert seen[0][0] < request.chunk_times[-1] - 0.5
    delays = sorted(arrived - sent
                    for (arrived, _), sent in zip(seen, request.chunk_times, strict=True))
    assert delays[len(delays) // 2] < 0.25


def test_without_tokens_no_token_events_and_no_streamed_calls(stub):
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    process = Process(tasks={"a": Task(description="Write", agent=agent)})
    kinds = [ev.kind for ev in process.stream()]
    assert "token" not in kinds and kinds[-1] == "run_completed"
    assert not any(r.stream for r in stub.requests)


def test_structured_output_streams_raw_json_and_still_parses(stub):
    class Verdict(BaseModel):
        label: str
        score: int

    stub.reply = {"label": "spam", "score": 7}
    agent = Agent(role="Judge", goal="Judge", llm=stub.llm)
    process = Process(tasks={"judge": Task(description="Judge the mail", agent=agent,
                                           output_pydantic=Verdict)})
    events = list(process.stream(tokens=True))
    text = "".join(ev.text or "" for ev in events if ev.kind == "token")
    result = events[-1].results["judge"]
    assert text == result.raw
    assert result.pydantic == Verdict(label="spam", score=7)


def test_a_failed_task_and_run_are_events(stub):
    stub.add_rule(match="Break", fault="500", times=100)
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"ok": Task(description="Fine", agent=agent),
                             "bad": Task(description="Break", agent=agent, context=["ok"],
                                         max_retries=0)})
    events = list(process.stream())
    [failed] = [ev for ev in events if ev.kind == "task_failed"]
    assert failed.task == "bad" and failed.error_type == "TaskFailedError"
    assert events[-1].kind == "run_failed" and "ok" in events[-1].results


def test_loop_iterations_are_events(stub):
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"each": Task(description="Handle {item}", agent=agent,
                                          task_type="loop",
                                          loop_data=[{"item": "a"}, {"item": "b"}])})
    events = list(process.stream())
    iterations = sorted(ev.iteration for ev in events if ev.kind == "loop_iteration")
    assert iterations == [0, 1]
    assert [ev.task for ev in events if ev.kind == "task_completed"] == ["each"]


def test_sequential_and_hierarchical_runs_stream_the_same_schema(stub):
    stub.add_rule(match="assign", reply={"assignments": [
        {"task": "a", "agent": "Worker", "reason": "fits"}]})
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    for mode in ("sequential", "hierarchical"):
        tasks = {"a": Task(description="Do the work", agent=agent if mode == "sequential"
                           else None)}
        process = Process(tasks=tasks, agents=[agent],
                          manager_llm=stub.llm if mode == "hierarchical" else None)
        kinds = [ev.kind for ev in process.stream(mode)]
        assert kinds[0] == "run_started" and kinds[-1] == "run_completed", (mode, kinds)
        assert "task_completed" in kinds


def test_breaking_out_cancels_the_run(stub):
    stub.add_rule(match="Slow", latency=30.0)
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"slow": Task(description="Slow", agent=agent),
                             "after": Task(description="After", agent=agent,
                                           context=["slow"])})
    started = time.monotonic()
    for ev in process.stream():
        if ev.kind == "task_started":
            break
    assert time.monotonic() - started < 20  # the model's 30 s were not waited for
    assert stub.count("After") == 0
    # The process runs again afterwards (its Supervisor was given back cleanly).
    stub.clear_rules()
    assert process.workflow()["after"].raw == "ok"


async def test_astream_yields_the_same_events(stub):
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"a": Task(description="A", agent=agent)})
    kinds = [ev.kind async for ev in process.astream(tokens=True)]
    assert kinds == ["run_started", "task_started", "token", "task_completed", "run_completed"]


def test_a_bad_definition_raises_before_anything_runs(stub):
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"a": Task(description="A", agent=agent, context=["missing"])})
    with pytest.raises(WorkflowDefinitionError):
        next(iter(process.stream()))
    assert stub.count() == 0
