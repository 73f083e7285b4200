"""Guide section: "Graceful Degradation" (a fallback task and a report that copes).

``fallback_analysis`` has ``condition_on_previous_failure=True``: it runs only when the
task before it (``primary_analysis``) failed, and is skipped otherwise. ``report`` has
``handle_missing_context=True``: it runs with whatever context exists, and its prompt
says what is missing. ``Process(on_failure="continue")`` keeps the run going past other
failures too (their dependants are skipped instead of the run stopping).

The example runs twice: once with the primary analyst healthy, once with its service
down (a local stand-in that answers HTTP 503: ``ray_orch.testing.StubLLMServer``).

Run:
    python examples/13_graceful_degradation.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, RunError, Task
from ray_orch.testing import StubLLMServer


def run(primary_analyst: Agent) -> dict[str, str]:
    basic_analyst = Agent(role="Basic Analyst", goal="Quick, rough analyses", max_tokens=80)
    reporter = Agent(role="Reporter", goal="Write short reports", max_tokens=120)

    # Workflow with graceful degradation
    tasks = {
        "primary_analysis": Task(
            description="Perform detailed analysis of last month's sales",
            agent=primary_analyst,
            max_retries=2,
            retry_delay=0.2,
        ),
        "fallback_analysis": Task(
            description="Perform basic analysis of last month's sales",
            agent=basic_analyst,
            condition_on_previous_failure=True  # Only runs if primary fails
        ),
        "report": Task(
            description="Generate report with available data",
            agent=reporter,
            context=["primary_analysis", "fallback_analysis"],
            handle_missing_context=True  # Continues even if some context missing
        )
    }
    process = Process(tasks=tasks, agents=[primary_analyst, basic_analyst, reporter],
                      on_failure="continue", name="graceful_degradation")
    process.workflow()
    for name, task in tasks.items():
        print(f"  {name:<18} {task.status:<9} {(task.result.raw if task.result else '')[:60]!r}")
    missing = tasks["report"].result.metadata.get("missing_context", {})
    print(f"  report ran without: {missing or 'nothing'}")
    return {name: task.status for name, task in tasks.items()}


def main() -> int:
    try:
        print("primary analyst healthy:")
        healthy = run(Agent(role="Primary Analyst", goal="Thorough analyses", max_tokens=80))
        with StubLLMServer() as down:
            down.add_rule(fault="503")
            print("primary analyst's service down:")
            degraded = run(Agent(role="Primary Analyst", goal="Thorough analyses",
                                 llm=down.llm))
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1
    ok = (healthy == {"primary_analysis": "completed", "fallback_analysis": "skipped",
                      "report": "completed"}
          and degraded == {"primary_analysis": "failed", "fallback_analysis": "completed",
                           "report": "completed"})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
