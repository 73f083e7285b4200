"""Guide section: "When to Use Hierarchical Process" (a research project).

The tasks name no agent: a manager model assigns each ready task to one of the
researchers (several at once when tasks are independent). Every assignment is checked;
an invalid or missing answer falls back to the least-loaded, best-matching agent, so a
weak manager model cannot stall the run.

Run:
    python examples/03_hierarchical_research.py

Model: the guide passes ``manager_llm="gpt-4o"``; here ``manager_llm=None`` takes the
manager's model from ``RAY_ORCH_MODEL`` too (else the embedded offline model).
"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, RunError, Task

TOPIC = "how remote work affects team productivity"


def main() -> int:
    researchers = [
        Agent(role="Literature Reviewer", goal="Review academic papers", max_tokens=120),
        Agent(role="Data Analyst", goal="Analyze datasets", max_tokens=120),
        Agent(role="Report Writer", goal="Write findings", max_tokens=120),
    ]

    tasks = {
        "define_scope": Task(
            description=f"Define research scope and objectives for a study of {TOPIC}",
            expected_output="Research plan",
        ),
        "literature_review": Task(
            description="Review relevant literature",
            expected_output="Literature summary",
        ),
        "data_collection": Task(
            description="Collect and prepare data",
            expected_output="Prepared dataset",
        ),
        "analysis": Task(
            description="Analyze data and draw insights",
            expected_output="Analysis results",
        ),
        "report": Task(
            description="Write comprehensive report",
            expected_output="Final report",
        ),
    }

    # Manager dynamically assigns tasks based on agent availability and expertise
    process = Process(
        tasks=tasks,
        agents=researchers,
        manager_llm=None,  # the guide: "gpt-4o"; None: RAY_ORCH_MODEL or the embedded model
        name="research_project",
    )
    try:
        results = process.hierarchical()
    except RunError as exc:
        print(f"research project failed: {exc}")
        return 1

    for name, output in results.items():
        meta = output.metadata
        print(f"{name:<18} -> {meta.get('assigned_agent')!s:<20} (by {meta.get('assigned_by')})"
              f"  {output.raw[:70]!r}")
    return 0 if len(results) == len(tasks) else 1


if __name__ == "__main__":
    sys.exit(main())
