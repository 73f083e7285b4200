"""Guide section: "Task Metrics" (where the time went; the guide's MetricsCollector).

After a run, ``process.metrics`` holds per-task execution times, success rates, retries
and tokens (from each ``TaskOutput.metadata`` and the run's events) and analyses them:
the slowest tasks, the critical path (the chain that set the makespan), how long ready
tasks queued for each agent role, and plain-language suggestions. While Ray runs, the
same numbers are on a Prometheus endpoint (``process.metrics_url``).

The guide's ``MetricsCollector`` works as written; it reads the same metadata keys (``execution_time``, ``retry_count``, ``tokens_used``).

Run:
    python examples/15_metrics_bottlenecks.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys

from ray_orch import Agent, MetricsCollector, Process, RunError, Task


def main() -> int:
    researcher = Agent(role="Researcher", goal="Gather facts", max_tokens=40)
    # One writer actor for three drafts: they queue for it (visible in queueing_by_role).
    writer = Agent(role="Writer", goal="Write clearly", max_tokens=120, max_concurrency=1)
    editor = Agent(role="Editor", goal="Edit for clarity", max_tokens=80)
    tasks = {
        "facts": Task(description="List three facts about solar power", agent=researcher),
        "draft_intro": Task(description="Write an intro paragraph", agent=writer,
                            context=["facts"]),
        "draft_body": Task(description="Write a body paragraph", agent=writer,
                           context=["facts"]),
        "draft_outro": Task(description="Write a closing paragraph", agent=writer,
                            context=["facts"]),
        "edit": Task(description="Edit the three paragraphs into one article", agent=editor,
                     context=["draft_intro", "draft_body", "draft_outro"]),
    }
    process = Process(tasks=tasks, agents=[researcher, writer, editor], name="article")
    try:
        results = process.workflow()
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1

    metrics = process.metrics
    print(metrics.summary())
    print("\nslowest:", [(task, round(s, 2)) for task, s in metrics.slowest(3)])
    print("critical path:", " -> ".join(step.task for step in metrics.critical_path()))
    for role, q in metrics.queueing_by_role().items():
        print(f"queueing {role}: {q.n} waits, mean {q.mean:.2f} s, max {q.max:.2f} s")
    for hint in metrics.suggestions():
        print("suggestion:", hint)
    print("Prometheus endpoint:", process.metrics_url)

    # Use metrics collector (the guide's class, fed with this run's outputs)
    collector = MetricsCollector()

    for task_id, result in results.items():
        collector.record_task(task_id, result)

    print(f"Bottlenecks: {collector.get_bottlenecks()}")
    return 0 if collector.get_bottlenecks() and metrics.critical_path() else 1


if __name__ == "__main__":
    sys.exit(main())
