"""Task.execute() in-process: retry budgets, guardrails, fallback, breaker, no Ray."""

from __future__ import annotations

from unittest.mock import Mock

import pytest

from ray_orch import (
    CircuitBreaker,
    CircuitOpenError,
    GuardrailFailedError,
    GuardrailResult,
    Task,
    TaskFailedError,
)


def agent_replying(*replies):
    agent = Mock()
    agent.chat.side_effect = list(replies)
    return agent


def test_retry_count_is_exact_and_budget_is_enforced():
    agent = agent_replying(Exception("boom"), "fine")
    out = Task(description="x", agent=agent, max_retries=1, retry_delay=0).execute()
    assert out.metadata["retry_count"] == 1

    agent = agent_replying(Exception("1"), Exception("2"), "never reached")
    task = Task(description="x", agent=agent, max_retries=1, retry_delay=0)
    with pytest.raises(TaskFailedError, match="after 2 attempts"):
        task.execute()
    assert agent.chat.call_count == 2
    assert task.status == "failed"


def test_guardrail_feedback_reaches_next_prompt_and_validation_steps_bound_it():
    def no_error(output):
        if "error" in output.raw:
            return GuardrailResult(success=False, error=f"API error: {output.raw}")
        return GuardrailResult(success=True)

    agent = agent_replying("error: 503", "all good")
    out = Task(description="Call external API", agent=agent, guardrails=[no_error],
               validation_steps=3).execute()
    assert out.raw == "all good"
    second_prompt = agent.chat.call_args_list[1].args[0]
    assert "API error: error: 503" in second_prompt

    agent = agent_replying("error", "error", "error")
    with pytest.raises(GuardrailFailedError):
        Task(description="y", agent=agent, guardrails=[lambda o: (False, "nope")],
             validation_steps=1).execute()
    assert agent.chat.call_count == 2


def test_guardrail_may_return_bool_tuple_or_replacement():
    agent = agent_replying("raw answer")
    out = Task(description="z", agent=agent,
               guardrails=[lambda o: True, lambda o: (True, "rewritten")]).execute()
    assert out.raw == "rewritten"


def test_fallback_agent_takes_over_and_is_recorded():
    primary = agent_replying(Exception("down"), Exception("down"))
    primary.role = "Primary"
    backup = agent_replying("from backup")
    backup.role = "Backup"
    out = Task(description="API", agent=primary, fallback_agent=backup, max_retries=1,
               retry_delay=0).execute()
    assert out.raw == "from backup"
    assert out.agent == "Backup" and out.metadata["fallback"] is True


def test_circuit_breaker_opens_short_circuits_and_can_raise():
    breaker = CircuitBreaker(failure_threshold=2, timeout=60)
    agent = agent_replying(*[Exception("down")] * 10)
    for _ in range(2):
        with pytest.raises(TaskFailedError):
            Task(description="q", agent=agent, max_retries=0, circuit_breaker=breaker).execute()
    calls = agent.chat.call_count
    out = Task(description="q", agent=agent, circuit_breaker=breaker).execute()
    assert out.metadata["circuit_status"] == "open"
    assert agent.chat.call_count == calls  # short-circuited: no call made

    strict = CircuitBreaker(failure_threshold=1, timeout=60, raise_on_open=True)
    with pytest.raises(TaskFailedError):
        Task(description="q", agent=agent, max_retries=0, circuit_breaker=strict).execute()
    with pytest.raises(CircuitOpenError):
        Task(description="q", agent=agent, circuit_breaker=strict).execute()


def test_placeholders_are_filled_from_inputs():
    agent = agent_replying("ok")
    Task(description="Analyze data chunk {chunk_id} of {total}", agent=agent).execute(
        {"chunk_id": 7})
    assert "Analyze data chunk 7 of {total}" in agent.chat.call_args.args[0]
