"""The run loop (``engine/run.py``'s ``Run``) on the fakes of its ports: order and context,
parallel branches, a failure and what it stops, retries, cancelling, the events a run
emits. Real members (``AgentMember``) call the stub model over HTTP; no Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.core.errors import RunCancelledError
from ray_orch.engine.run import Run
from ray_orch.testing.fakes import ListSink, fake_services, run_on_fakes, spec_of


def writer(stub, **options) -> Agent:
    return Agent(role="Writer", goal="Write", llm=stub.llm, **options)


def test_a_sequential_run_passes_each_output_to_the_next(stub):
    stub.reply = lambda req: f"<{req.prompt.count('<')} {len(stub.requests)}>"
    a = writer(stub)
    tasks = [Task(name="one", description="Step one", agent=a),
             Task(name="two", description="Step two", agent=a),
             Task(name="three", description="Step three", agent=a)]
    result, events = run_on_fakes(spec_of(tasks, [a], mode="sequential"))
    assert result.error is None
    raws = [result.outputs[n].raw for n in ("one", "two", "three")]
    assert raws == ["<0 1>", "<1 2>", "<1 3>"]  # each saw the one before it, only
    assert raws[1] in stub.requests_matching("Step three")[0].prompt
    assert [e.task for e in events if e.kind == "task_finished"] == ["one", "two", "three"]
    assert events[0].kind == "run_started" and events[-1].kind == "run_finished"


def test_independent_branches_run_at_once_and_a_join_waits_for_both(stub):
    stub.latency = 0.3
    a = writer(stub, max_concurrency=4)
    tasks = [Task(name="left", description="Left branch", agent=a),
             Task(name="right", description="Right branch", agent=a),
             Task(name="join", description="Join them", agent=a, context=["left", "right"])]
    result, _ = run_on_fakes(spec_of(tasks, [a]))
    assert result.error is None
    left, right = stub.requests_matching("Left branch")[0], stub.requests_matching("Right branch")[0]
    assert left.t_start < right.t_end and right.t_start < left.t_end  # in flight together
    join = stub.requests_matching("Join them")[0]
    assert join.t_start >= max(left.t_end, right.t_end)
    assert result.outputs["left"].raw in join.prompt


def test_a_failed_task_stops_what_depends_on_it_and_not_the_rest(stub):
    stub.add_rule(match="Broken step", fault="500", times=10)
    a = writer(stub)
    tasks = [Task(name="broken", description="Broken step", agent=a, max_retries=0),
             Task(name="after", description="After broken", agent=a, context=["broken"]),
             Task(name="apart", description="Apart step", agent=a)]
    result, events = run_on_fakes(spec_of(tasks, [a], on_failure="continue"))
    assert result.statuses["broken"] == "failed" and result.statuses["apart"] == "completed"
    assert result.statuses["after"] != "completed"
    assert stub.count("After broken") == 0
    assert "broken" in result.errors
    assert any(e.kind == "task_finished" and e.task == "broken" and e.status == "failed"
               for e in events)


def test_a_retryable_fault_is_tried_again_on_the_member(stub):
    stub.add_rule(match="Flaky step", fault="500", times=1)
    a = writer(stub)
    tasks = [Task(name="flaky", description="Flaky step", agent=a, max_retries=2)]
    result, _ = run_on_fakes(spec_of(tasks, [a]))
    assert result.statuses["flaky"] == "completed"
    assert stub.count("Flaky step") == 2


def test_a_cancelled_run_keeps_what_completed(stub):
    stub.add_rule(match="Slow step", latency=5.0)
    a = writer(stub)
    tasks = [Task(name="fast", description="Fast step", agent=a),
             Task(name="slow", description="Slow step", agent=a, context=["fast"])]

    async def go():
        runner = Run(spec_of(tasks, [a]), emit=lambda e: None, services=fake_services())
        job = asyncio.ensure_future(runner.execute())
        while stub.count("Slow step") == 0:
            await asyncio.sleep(0.01)
        job.cancel()
        return await job

    result = asyncio.run(go())
    assert isinstance(result.error, RunCancelledError)
    assert result.statuses["fast"] == "completed" and result.statuses["slow"] != "completed"
    assert result.outputs["fast"].raw == "ok"


def test_every_event_also_reaches_the_metrics_sink_which_is_closed_at_the_end(stub):
    a = writer(stub)
    sink = ListSink()
    tasks = [Task(name="only", description="Only step", agent=a)]
    result, events = run_on_fakes(spec_of(tasks, [a]), services=fake_services(sink=sink))
    assert result.error is None and sink.closed
    assert [e.kind for e in sink.events] == [e.kind for e in events]
