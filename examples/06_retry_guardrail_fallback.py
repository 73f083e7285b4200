"""Guide section: "The Retry Pattern" (guardrail, validation_steps, retry_delay, fallback).

The API agent talks to a flaky service: its first call fails with HTTP 503 (an
exception: retried after ``retry_delay`` with exponential backoff, up to ``max_retries``),
then it answers ``{"error": ...}`` (the ``api_validation`` guardrail rejects it; each
rejection is fed back and retried, up to ``validation_steps``). When every attempt has
failed, ``fallback_agent`` takes the task over.

The flaky service is a local stand-in (``ray_orch.testing.StubLLMServer`` scripted to
fail), so the example fails the same way every time; the backup agent uses your model.

Run:
    python examples/06_retry_guardrail_fallback.py

Model (backup agent): ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys

from ray_orch import Agent, GuardrailResult, Process, RunError, Task
from ray_orch.testing import StubLLMServer


# Reliable API integration with retries
def api_validation(output):
    """Validate API response"""
    if "error" in output.raw:
        return GuardrailResult(
            success=False,
            error=f"API error: {output.raw}"
        )
    return GuardrailResult(success=True)


def main() -> int:
    with StubLLMServer(reply='{"error": "upstream quota exceeded"}') as flaky_api:
        flaky_api.add_rule(fault="503", times=1)  # the first call: 503 Service Unavailable

        api_agent = Agent(role="API Client", goal="Call external APIs", llm=flaky_api.llm)
        backup_agent = Agent(role="Backup Client", goal="Answer from cached knowledge",
                             max_tokens=100)

        reliable_task = Task(
            description="Call external API: today's weather forecast for Paris, one sentence",
            agent=api_agent,
            guardrails=[api_validation],
            validation_steps=3,  # Retry up to 3 times
            retry_delay=1,  # the guide waits 5 seconds; 1 s keeps the example quick
            fallback_agent=backup_agent  # Use if all retries fail
        )

        process = Process(tasks={"reliable_task": reliable_task},
                          agents=[api_agent, backup_agent], name="retry_pattern")
        try:
            results = process.workflow()
        except RunError as exc:
            print(f"the task failed even with its fallback: {exc}")
            return 1
        calls = [(r.status, r.fault or (r.reply or "")[:40]) for r in flaky_api.requests]

    output = results["reliable_task"]
    print(f"flaky API calls ({len(calls)}):")
    for status, what in calls:
        print(f"  HTTP {status}: {what}")
    print(f"answered by: {output.agent} (fallback={output.metadata.get('fallback', False)})")
    print(f"why: {output.metadata.get('primary_error', '')[:160]}")
    print(f"answer: {output.raw[:120]!r}")
    return 0 if output.metadata.get("fallback") else 1


if __name__ == "__main__":
    sys.exit(main())
