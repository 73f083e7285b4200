"""Guide section: "Selective Context Passing" (context + context_fields).

Five research tasks answer structured findings. The summary task takes only two of them
(``context=[task3, task5]``) and, of those, only the fields it needs
(``context_fields=["key_findings", "recommendations"]``): the long ``notes`` and the
``sources`` never enter its prompt.

Run:
    python examples/08_selective_context.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import BaseModel, Field

from ray_orch import Agent, Process, RunError, Task

Line = Annotated[str, Field(max_length=100)]


class Findings(BaseModel):
    # Bounded lists and strings keep a small local model from rambling.
    key_findings: list[Line] = Field(min_length=1, max_length=2)
    recommendations: list[Line] = Field(min_length=1, max_length=2)
    notes: str = Field(max_length=200)
    sources: list[Line] = Field(max_length=2)


AREAS = ["pricing", "onboarding", "support tickets", "churn", "feature requests"]


def main() -> int:
    researcher = Agent(role="Researcher", goal="Research one area of the business",
                       max_tokens=300)
    summarizer = Agent(role="Summarizer", goal="Summarize findings", max_tokens=150)
    task1, task2, task3, task4, task5 = (
        Task(description=f"Research {area} for the quarterly review", agent=researcher,
             output_json=Findings)
        for area in AREAS)

    # Good: Selective context
    summary_task = Task(
        description="Summarize findings",
        agent=summarizer,
        context=[task3, task5],  # Only relevant tasks
        context_fields=["key_findings", "recommendations"]  # Specific fields
    )

    tasks = {"research_pricing": task1, "research_onboarding": task2,
             "research_support": task3, "research_churn": task4,
             "research_features": task5, "summary": summary_task}
    process = Process(tasks=tasks, agents=[researcher, summarizer], name="selective_context")
    try:
        results = process.workflow()
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1

    for name in ("research_support", "research_features"):
        data = results[name].json_dict or {}
        seen = {k: data[k] for k in summary_task.context_fields}
        print(f"{name}: summary sees {seen}")
        print(f"{'':<{len(name)}}  and not notes/sources ({len(data['notes'])} chars of notes)")
    print(f"summary: {results['summary'].raw[:160]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
