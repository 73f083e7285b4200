"""Resilience on Ray against the stub's fault injection, over real HTTP."""

from __future__ import annotations

import re

import pytest
import ray

from ray_orch import (
    Agent,
    CircuitBreaker,
    GuardrailResult,
    Process,
    RunCancelledError,
    Task,
    TaskFailedError,
    TaskTimeoutError,
)

pytestmark = pytest.mark.usefixtures("ray_session")


def item_of(prompt: str) -> str:
    return re.search(r"Handle item (\d+)", prompt).group(1)


@pytest.mark.parametrize("client", ["auto", "litellm"])
def test_mixed_faults_every_task_completes_and_retry_counts_match_the_log(stub, client):
    stub.hang_seconds = 5
    stub.retry_after = 0.05
    stub.set_faults(rate=0.2, kinds=["429", "500", "timeout", "malformed"], seed=7)
    # Both model clients: the lean one for OpenAI-compatible servers, and litellm.
    agent = Agent(role="Worker", goal="Work", llm={**stub.llm, "client": client}, timeout=1.0,
                  pool_size=2)
    tasks = {f"t{i}": Task(description=f"Handle item {i}", agent=agent, max_retries=8,
                           retry_delay=0.01) for i in range(100)}
    results = Process(tasks=tasks, agents=[agent], name="faults").workflow()

    assert len(results) == 100 and all(t.status == "completed" for t in tasks.values())
    faulted = [r for r in stub.requests if r.fault]
    assert {r.fault for r in faulted} == {"429", "500", "timeout", "malformed"}
    for name, output in results.items():
        asked = [r for r in stub.requests if item_of(r.prompt) == name[1:]]
        assert output.metadata["retry_count"] == len(asked) - 1, name
        assert sum(1 for r in asked if not r.fault) == 1


def test_fallback_agent_after_exhaustion_and_guardrail_feedback_in_prompt(stub):
    primary = Agent(role="Primary", goal="Call the API", llm=stub.llm)
    backup = Agent(role="Backup", goal="Call the API another way",
                   llm={**stub.llm, "model": "openai/backup"})
    stub.add_rule(match=lambda r: r.model == "stub" and "Call external API" in r.prompt,
                  fault="503")

    def api_validation(output):
        if "error" in output.raw:
            return GuardrailResult(success=False, error=f"API error: {output.raw}")
        return GuardrailResult(success=True)

    stub.add_rule(match=lambda r: r.model == "backup", reply=["error: quota", "fine"])
    task = Task(description="Call external API", agent=primary, guardrails=[api_validation],
                validation_steps=3, max_retries=1, retry_delay=0.01, fallback_agent=backup)
    results = Process(tasks={"call": task}, agents=[primary, backup]).workflow()

    out = results["call"]
    assert out.raw == "fine" and out.agent == "Backup" and out.metadata["fallback"] is True
    assert len([r for r in stub.requests if r.model == "stub"]) == 2  # 1 + max_retries
    retried = [r for r in stub.requests if r.model == "backup"][1]
    assert "API error: error: quota" in retried.prompt


def test_breaker_opens_short_circuits_half_opens_and_closes(stub):
    breaker = CircuitBreaker(failure_threshold=2, timeout=1.0, name="flaky-api-test")
    agent = Agent(role="Caller", goal="Call", llm=stub.llm)
    stub.add_rule(match="Ping the service", fault="500", times=2)

    def run():
        task = Task(description="Ping the service", agent=agent, max_retries=0,
                    circuit_breaker=breaker)
        return Process(tasks={"ping": task}, agents=[agent]).workflow()["ping"]

    for _ in range(2):
        with pytest.raises(TaskFailedError):
            run()
    asked = stub.count("Ping the service")
    opened = run()
    assert opened.metadata["circuit_status"] == "open"
    assert stub.count("Ping the service") == asked  # short-circuited: no request
    hub = ray.get_actor("rayorch-breakers", namespace="ray_orch")
    assert ray.get(hub.snapshot.remote())["flaky-api-test"]["state"] == "open"
    # half-open after the timeout: one probe goes through and closes it
    deadline_state = None
    import time

    time.sleep(1.05)  # the breaker's own timeout is the behaviour under test
    probe = run()
    deadline_state = ray.get(hub.snapshot.remote())["flaky-api-test"]["state"]
    assert probe.metadata["circuit_status"] == "closed_after_probe"
    assert deadline_state == "closed"


def test_kill_an_agent_actor_mid_fan_out_every_output_once(stub, once_seen,
                                                           kill_a_busy_member):
    stub.latency = 0.05
    agent = Agent(role="Chunker", goal="Chunk", llm=stub.llm, pool_size=2, max_concurrency=8)
    stub.add_rule(match="Handle item", reply=lambda r: f"done {item_of(r.prompt)}")
    tasks = {"fan": Task(description="Handle item {item}", agent=agent, task_type="loop",
                         loop_data=list(range(200)))}
    with once_seen(stub, "Handle item", 40, kill_a_busy_member):
        results = Process(tasks=tasks, agents=[agent]).workflow()

    killed = kill_a_busy_member.killed
    assert killed, "no busy actor was found to kill"
    outputs = results["fan"].iterations
    assert [o.raw for o in outputs] == [f"done {i}" for i in range(200)]
    assert all(o.metadata["actor_pid"] != killed[0] for o in outputs[-20:])


def test_cancel_stops_in_flight_work_and_keeps_completed_results(stub, once_seen):
    stub.add_rule(match="Quick step", reply="quick")
    stub.add_rule(match="Slow step", latency=30)
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = {"quick": Task(description="Quick step", agent=agent),
             "slow": Task(description="Slow step", agent=agent, context=["quick"]),
             "after": Task(description="After step", agent=agent, context=["slow"])}
    process = Process(tasks=tasks, agents=[agent])
    with once_seen(stub, "Slow step", 1, process.cancel), \
            pytest.raises(RunCancelledError) as info:
        process.workflow()
    assert info.value.results["quick"].raw == "quick"
    assert tasks["quick"].status == "completed"
    assert tasks["slow"].status == "pending" and tasks["after"].status == "pending"
    # the remote attempt was cancelled too, not left waiting 30 s for the stub
    from actors.registry import get_registry

    busy = [ray.get(h.info.remote())["in_flight"] for h in ray.get(get_registry().members.remote())]
    assert sum(busy) == 0


def test_timeout_and_graceful_degradation(stub):
    stub.add_rule(match="Perform detailed analysis", latency=5)
    primary = Agent(role="Primary Analyst", goal="Analyze deeply", llm=stub.llm)
    basic = Agent(role="Basic Analyst", goal="Analyze simply", llm=stub.llm)
    reporter = Agent(role="Reporter", goal="Report", llm=stub.llm)
    tasks = {
        "primary_analysis": Task(description="Perform detailed analysis", agent=primary,
                                 max_retries=2, timeout=0.5),
        "fallback_analysis": Task(description="Perform basic analysis", agent=basic,
                                  condition_on_previous_failure=True),
        "report": Task(description="Generate report with available data", agent=reporter,
                       context=["primary_analysis", "fallback_analysis"],
                       handle_missing_context=True),
    }
    process = Process(tasks=tasks, agents=[primary, basic, reporter])
    results = process.workflow()

    assert tasks["primary_analysis"].status == "failed"
    assert "timeout" in process.last_result.errors["primary_analysis"]
    assert sorted(results) == ["fallback_analysis", "report"]
    report = stub.requests_matching("Generate report")[0].prompt
    assert "--- fallback_analysis ---" in report
    assert "some context is missing: primary_analysis (failed)" in report
    assert results["report"].metadata["missing_context"] == {"primary_analysis": "failed"}


def test_failure_policy_continue_skips_dependants_and_fail_raises(stub):
    stub.add_rule(match="Broken step", fault="401")
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = {"broken": Task(description="Broken step", agent=agent),
             "needs_it": Task(description="Needs it", agent=agent, context=["broken"]),
             "independent": Task(description="Independent step", agent=agent)}
    results = Process(tasks=tasks, agents=[agent], on_failure="continue").workflow()
    assert sorted(results) == ["independent"]
    assert (tasks["broken"].status, tasks["needs_it"].status) == ("failed", "skipped")
    assert stub.count("Broken step") == 1  # 401 is not retryable

    with pytest.raises(TaskFailedError) as info:
        Process(tasks=tasks, agents=[agent]).workflow()
    assert info.value.task == "broken"
    assert isinstance(info.value, TaskFailedError)
    _ = TaskTimeoutError  # imported for the timeout test above
