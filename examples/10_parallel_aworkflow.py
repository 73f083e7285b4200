"""Guide section: "Parallel Execution" (independent tasks at once, with aworkflow).

The three analyses do not depend on each other, so they run at the same time, each on
its own agent's actor; ``combine_results`` starts when all three are done.
``await process.aworkflow()`` runs the workflow from asyncio code.

Run:
    python examples/10_parallel_aworkflow.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model (which decodes two
requests at once on a CPU, so the overlap is partial there).
"""

from __future__ import annotations

import asyncio
import sys

from ray_orch import Agent, Process, RunError, Task


def build() -> tuple[dict[str, Task], list[Agent]]:
    sales_analyst = Agent(role="Sales Analyst", goal="Analyze sales", max_tokens=80)
    marketing_analyst = Agent(role="Marketing Analyst", goal="Analyze marketing",
                              max_tokens=80)
    support_analyst = Agent(role="Support Analyst", goal="Analyze support", max_tokens=80)
    reporter = Agent(role="Reporter", goal="Write short reports", max_tokens=120)
    agents = [sales_analyst, marketing_analyst, support_analyst, reporter]

    # Parallel independent tasks
    independent_tasks = {
        "analyze_sales": Task(
            description="Analyze sales data: Q3 revenue grew 8% while orders fell 2%",
            agent=sales_analyst,
            async_execution=True
        ),
        "analyze_marketing": Task(
            description="Analyze marketing data: the email campaign had a 3% click rate",
            agent=marketing_analyst,
            async_execution=True
        ),
        "analyze_support": Task(
            description="Analyze support tickets: most tickets are about login problems",
            agent=support_analyst,
            async_execution=True
        ),
        "combine_results": Task(
            description="Combine all analyses",
            agent=reporter,
            context=["analyze_sales", "analyze_marketing", "analyze_support"]
        )
    }
    return independent_tasks, agents


# Execute parallel tasks concurrently
async def run_parallel() -> Process:
    independent_tasks, agents = build()
    process = Process(tasks=independent_tasks, agents=agents, name="parallel_analyses")
    await process.aworkflow()
    return process


def main() -> int:
    try:
        process = asyncio.run(run_parallel())
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1

    spans = {}
    for event in process.events:
        if event.kind == "task_started":
            spans.setdefault(event.task, [event.ts, None])
        elif event.kind == "task_finished" and event.task in spans:
            spans[event.task][1] = event.ts
    t0 = min(start for start, _ in spans.values())
    for task, (start, end) in spans.items():
        print(f"{task:<18} ran {start - t0:5.2f} s -> {end - t0:5.2f} s")
    analyses = [spans[t] for t in ("analyze_sales", "analyze_marketing", "analyze_support")]
    overlapped = max(s for s, _ in analyses) < min(e for _, e in analyses)
    print("the three analyses overlapped in time:", overlapped)
    print(f"combined: {process.results['combine_results'].raw[:140]!r}")
    return 0 if len(process.results) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
