"""Task timeouts (``engine/timeouts.py``) and the run's cache and budget hooks on the
fakes: a timed-out attempt is stopped on its member and the task fails with
``TaskTimeoutError``; a cached output serves the next run; a spent budget dispatches
nothing new. No Ray."""

from __future__ import annotations

import time

from ray_orch import Agent, Task
from ray_orch.core.errors import BudgetExceededError
from ray_orch.testing.fakes import FakeRegistry, fake_services, run_on_fakes, spec_of


def test_a_task_past_its_timeout_fails_and_its_attempt_is_stopped(stub):
    stub.add_rule(match="Slow step", latency=5.0)
    a = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="slow", description="Slow step", agent=a, timeout=0.5, max_retries=0),
             Task(name="other", description="Other step", agent=a)]
    registry = FakeRegistry()
    started = time.monotonic()
    result, _ = run_on_fakes(spec_of(tasks, [a], on_failure="continue"),
                             services=fake_services(registry=registry))
    assert time.monotonic() - started < 4.0  # not the model's 5 s
    assert result.statuses == {"slow": "failed", "other": "completed"}
    assert "timeout" in result.errors["slow"]
    assert all(h.target.in_flight == 0 for h in registry.created)  # nothing left running


def test_a_cached_output_serves_the_next_run_without_a_model_call(stub):
    a = Agent(role="Writer", goal="Write", llm=stub.llm)
    services = fake_services(cache=True)
    tasks = [Task(name="a", description="Cached step", agent=a)]
    first, _ = run_on_fakes(spec_of(tasks, [a], cache=True), services=services)
    second, events = run_on_fakes(spec_of(tasks, [a], cache=True, run_id="r2"),
                                  services=services)
    assert first.outputs["a"].metadata["cache"] == "miss"
    assert second.outputs["a"].metadata["cache"] == "hit"
    assert second.outputs["a"].raw == first.outputs["a"].raw
    assert stub.count("Cached step") == 1
    assert [e.outcome for e in events if e.kind == "cache"] == ["hit"]


def test_a_spent_budget_dispatches_nothing_new(stub):
    a = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="one", description="First", agent=a),
             Task(name="two", description="Second", agent=a, context=["one"])]
    result, _ = run_on_fakes(spec_of(tasks, [a], budget_tokens=1))
    assert isinstance(result.error, BudgetExceededError)
    assert result.statuses == {"one": "completed", "two": "pending"}
    assert stub.count("Second") == 0
