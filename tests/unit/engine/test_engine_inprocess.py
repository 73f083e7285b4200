"""The run loop without Ray: ``Run`` given the in-process fakes of its ports
(``ray_orch.testing.fakes``), with real members calling the stub model over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ray_orch import Agent, Task
from ray_orch.core.errors import BudgetExceededError, RunCancelledError
from ray_orch.engine.ports import KeptMembers
from ray_orch.engine.run import Run, RunSpec
from ray_orch.testing.fakes import FakeRegistry, ListSink, fake_services

pytestmark = pytest.mark.filterwarnings("error")


def spec_of(tasks: list[Task], agents: list[Agent], **options) -> RunSpec:
    options.setdefault("mode", "workflow")
    options.setdefault("metrics", False)
    return RunSpec(run_id=options.pop("run_id", "r1"), workflow="w", tasks=tasks,
                   agents=agents, **options)


def run(spec: RunSpec, services=None, **kwargs):
    events = []
    services = services or fake_services(**kwargs)

    async def go():
        return await Run(spec, emit=events.append, services=services).execute()

    result = asyncio.run(go())
    return result, events, services


def agent_of(stub, role: str = "Writer", **options) -> Agent:
    return Agent(role=role, goal="Write", llm=stub.llm, **options)


def test_a_chain_runs_in_order_and_hands_off_without_ray(stub):
    stub.reply = lambda req: f"after[{req.prompt[-40:]}]"
    a = agent_of(stub)
    tasks = [Task(name="one", description="First step", agent=a),
             Task(name="two", description="Second step", agent=a, context=["one"]),
             Task(name="three", description="Third step", agent=a, context=["two"])]
    result, events, _ = run(spec_of(tasks, [a]))
    assert result.error is None, result.error
    assert result.statuses == {"one": "completed", "two": "completed", "three": "completed"}
    finished = [e.task for e in events if e.kind == "task_finished"]
    assert finished == ["one", "two", "three"]
    # Each step saw the previous output (context), and the stub was asked once each.
    assert stub.count("Second step") == 1 and stub.count("Third step") == 1
    assert result.outputs["one"].raw in stub.requests[1].prompt
    # The follower ran where its predecessor ran, queued behind it (a hand-off).
    assert result.outputs["two"].metadata.get("handed_off") is True


def test_a_run_with_the_fakes_never_imports_ray(stub):
    code = textwrap.dedent(f"""
        import asyncio, sys
        from ray_orch import Agent, Task
        from ray_orch.engine.run import Run, RunSpec
        from ray_orch.testing.fakes import fake_services
        agent = Agent(role="Writer", goal="Write", llm={stub.llm!r})
        tasks = [Task(name="a", description="Alone", agent=agent),
                 Task(name="b", description="After", agent=agent, context=["a"])]
        spec = RunSpec(run_id="r", workflow="w", mode="workflow", tasks=tasks,
                       agents=[agent], metrics=False)
        result = asyncio.run(Run(spec, emit=lambda e: None,
                                 services=fake_services()).execute())
        print(result.statuses, "ray" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAY_ORCH_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'a': 'completed', 'b': 'completed'} False"
    assert stub.count("After") == 1


def test_a_decision_routes_and_the_other_branch_never_starts(stub):
    stub.add_rule(match="Classify", reply="billing")
    a = agent_of(stub)
    tasks = [Task(name="classify", description="Classify the inquiry", agent=a,
                  task_type="decision",
                  condition={"billing": ["refund"], "technical": ["debug"]}),
             Task(name="refund", description="Refund it", agent=a),
             Task(name="debug", description="Debug it", agent=a)]
    result, events, _ = run(spec_of(tasks, [a]))
    assert result.statuses["refund"] == "completed"
    assert result.statuses["debug"] == "skipped"
    assert stub.count("Debug it") == 0
    assert [e.data["route"] for e in events if e.kind == "decision"] == ["billing"]


def test_a_killed_member_loses_nothing(stub):
    stub.latency = 0.05
    a = agent_of(stub, pool_size=2, max_concurrency=2)
    registry = FakeRegistry()
    tasks = [Task(name=f"t{i}", description=f"Item {i}", agent=a) for i in range(8)]

    async def go():
        services = fake_services(registry=registry)
        runner = Run(spec_of(tasks, [a]), emit=lambda e: None, services=services)
        job = asyncio.ensure_future(runner.execute())
        while stub.count("Item") < 2:  # some attempts are in flight
            await asyncio.sleep(0.005)
        busy = next(h for h in registry.created if h.target.in_flight)
        busy.kill()
        return await job, busy

    result, killed = asyncio.run(go())
    assert result.error is None
    assert all(s == "completed" for s in result.statuses.values())
    assert len(registry.created) == 3  # the dead member was replaced once
    assert killed in registry.forgotten


def test_cancelling_a_run_stops_its_attempts(stub):
    stub.latency = 5.0
    a = agent_of(stub)
    tasks = [Task(name="slow", description="Slow step", agent=a)]

    async def go():
        runner = Run(spec_of(tasks, [a]), emit=lambda e: None, services=fake_services())
        job = asyncio.ensure_future(runner.execute())
        while stub.count("Slow step") < 1:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        job.cancel()
        result = await job
        return result, time.monotonic() - started

    result, took = asyncio.run(go())
    assert isinstance(result.error, RunCancelledError)
    assert result.statuses["slow"] == "pending"
    assert took < 2.0


def test_events_reach_the_metrics_sink_and_the_cache_serves_the_second_run(stub):
    a = agent_of(stub)
    sink = ListSink()
    services = fake_services(cache=True, sink=sink)
    tasks = [Task(name="a", description="Cached step", agent=a)]
    first, _, _ = run(spec_of(tasks, [a], cache=True), services=services)
    second, events, _ = run(spec_of(tasks, [a], cache=True, run_id="r2"), services=services)
    assert second.outputs["a"].metadata["cache"] == "hit"
    assert stub.count("Cached step") == 1
    assert first.outputs["a"].metadata["cache"] == "miss"
    assert [e.outcome for e in events if e.kind == "cache"] == ["hit"]
    assert sink.closed and {"run_started", "task_finished", "run_finished"} <= \
        {e.kind for e in sink.events}


def test_a_spent_budget_dispatches_nothing_new(stub):
    a = agent_of(stub)
    tasks = [Task(name="one", description="First", agent=a),
             Task(name="two", description="Second", agent=a, context=["one"])]
    result, _, _ = run(spec_of(tasks, [a], budget_tokens=1))
    assert isinstance(result.error, BudgetExceededError)
    assert result.statuses == {"one": "completed", "two": "pending"}
    assert stub.count("Second") == 0


def test_the_journal_hook_lets_a_resumed_run_skip_finished_work(stub, tmp_path):
    a = agent_of(stub)
    stub.add_rule(match="Second", fault="500", times=10)
    tasks = [Task(name="one", description="First", agent=a),
             Task(name="two", description="Second", agent=a, context=["one"], max_retries=0)]
    first, _, _ = run(spec_of(tasks, [a], checkpoint_dir=str(tmp_path)))
    assert first.statuses["one"] == "completed" and first.statuses["two"] == "failed"
    stub.clear_rules()
    second, _, _ = run(spec_of(tasks, [a], checkpoint_dir=str(tmp_path), resume=True,
                               run_id=first.run_id))
    assert second.error is None
    assert second.resumed == ["one"]
    assert stub.count("First") == 1


def test_a_supervisor_keeps_members_between_runs(stub):
    a = agent_of(stub)
    registry = FakeRegistry()
    kept = KeptMembers()
    tasks = [Task(name="a", description="Step", agent=a)]
    for run_id in ("r1", "r2"):
        result, _, _ = run(spec_of(tasks, [a], run_id=run_id),
                           services=fake_services(registry=registry, kept=kept))
        assert result.error is None
    assert len(registry.created) == 1  # the second run leased nothing
