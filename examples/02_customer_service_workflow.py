"""Guide section: "When to Use Workflow Process" (customer-service routing).

``categorize`` is a decision: its answer (one of the condition's keys) picks the next
task; ``tech_support`` decides again; every branch ends in ``send_confirmation``. Tasks
that are never routed to end ``skipped``. Decisions ask the model for structured output
constrained to the keys, so the route is always valid.

Run:
    python examples/02_customer_service_workflow.py ["inquiry text"]

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model. (``ray-orch demo``
runs the same workflow with a richer display.)
"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, RunError, Task

INQUIRY = "I was charged twice for my March subscription. Please refund one payment."


def main(inquiry: str = INQUIRY) -> int:
    support_agent = Agent(role="Support", goal="Handle inquiries", max_tokens=120)
    tech_agent = Agent(role="Technical", goal="Solve technical issues", max_tokens=120)
    billing_agent = Agent(role="Billing", goal="Handle payments", max_tokens=120)
    escalation_agent = Agent(role="Escalation", goal="Handle complex cases", max_tokens=120)

    tasks = {
        "categorize": Task(
            description=f"Categorize customer inquiry: {inquiry!r}",
            agent=support_agent,
            task_type="decision",
            condition={
                "technical": ["tech_support"],
                "billing": ["billing_support"],
                "complex": ["escalate"],
                "simple": ["quick_response"],
            },
        ),
        "tech_support": Task(
            description=f"Resolve technical issue: {inquiry!r}",
            agent=tech_agent,
            task_type="decision",
            condition={
                "resolved": ["send_confirmation"],
                "needs_escalation": ["escalate"],
            },
        ),
        "billing_support": Task(
            description=f"Handle billing inquiry: {inquiry!r}",
            agent=billing_agent,
            next_tasks=["send_confirmation"],
        ),
        "escalate": Task(
            description=f"Handle complex case: {inquiry!r}",
            agent=escalation_agent,
            next_tasks=["send_confirmation"],
        ),
        "quick_response": Task(
            description=f"Send automated response to: {inquiry!r}",
            agent=support_agent,
            next_tasks=["send_confirmation"],
        ),
        "send_confirmation": Task(
            description="Send resolution confirmation",
            agent=support_agent,
        ),
    }

    process = Process(tasks=tasks, agents=[support_agent, tech_agent, billing_agent,
                                           escalation_agent], name="customer_service")
    try:
        results = process.workflow()  # Handles complex routing logic
    except RunError as exc:
        print(f"workflow failed: {exc}")
        return 1

    for name, task in tasks.items():
        output = results.get(name)
        if output is None:
            print(f"{name:<18} {task.status}")
        elif "decision" in output.metadata:
            print(f"{name:<18} {task.status}: decided {output.metadata['decision']!r}")
        else:
            print(f"{name:<18} {task.status}: {output.raw[:90]!r}")
    return 0 if tasks["send_confirmation"].status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
