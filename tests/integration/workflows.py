"""Workflows from the guide that several test modules run."""

from __future__ import annotations

from typing import Any

from ray_orch import Agent, Task


def customer_service(llm: Any = None) -> tuple[dict[str, Task], list[Agent]]:
    """The guide's customer-service workflow ("When to Use Workflow Process")."""
    support_agent = Agent(role="Support", goal="Handle inquiries", llm=llm)
    tech_agent = Agent(role="Technical", goal="Solve technical issues", llm=llm)
    billing_agent = Agent(role="Billing", goal="Handle payments", llm=llm)
    escalation_agent = Agent(role="Escalation", goal="Handle complex cases", llm=llm)
    tasks = {
        "categorize": Task(description="Categorize customer inquiry", agent=support_agent,
                           task_type="decision",
                           condition={"technical": ["tech_support"],
                                      "billing": ["billing_support"],
                                      "complex": ["escalate"],
                                      "simple": ["quick_response"]}),
        "tech_support": Task(description="Resolve technical issue", agent=tech_agent,
                             task_type="decision",
                             condition={"resolved": ["send_confirmation"],
                                        "needs_escalation": ["escalate"]}),
        "billing_support": Task(description="Handle billing inquiry", agent=billing_agent,
                                next_tasks=["send_confirmation"]),
        "escalate": Task(description="Handle complex case", agent=escalation_agent,
                         next_tasks=["send_confirmation"]),
        "quick_response": Task(description="Send automated response", agent=support_agent,
                               next_tasks=["send_confirmation"]),
        "send_confirmation": Task(description="Send resolution confirmation",
                                  agent=support_agent),
    }
    return tasks, [support_agent, tech_agent, billing_agent, escalation_agent]
