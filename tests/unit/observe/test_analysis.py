"""Run analysis: critical path from event timestamps, queueing per role, the guide's
``MetricsCollector`` as the guide writes it."""

from __future__ import annotations

from typing import Any

import pytest

from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.observe.analysis import MetricsCollector, PathStep, QueueStats, RunMetrics


def span(task: str, role: str, ready: float, start: float, finish: float,
         status: str = "completed") -> list[Event]:
    return [
        Event(kind="task_ready", task=task, ts=ready),
        Event(kind="task_started", task=task, agent_role=role, ts=start),
        Event(kind="task_finished", task=task, agent_role=role, status=status, ts=finish,
              duration_s=finish - start),
    ]


# Diamond: a → (b, c) → d. c is the slow branch, so the path is a, c, d.
#   a: 0..2    b: 2..3 (ready 2)    c: 2.5..7 (ready 2, waited 0.5)    d: 7..10
DIAMOND_EDGES = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def diamond_events() -> list[Event]:
    return [
        Event(kind="run_started", ts=0.0, data={"tasks": 4}),
        *span("a", "Researcher", 0.0, 0.0, 2.0),
        *span("b", "Writer", 2.0, 2.0, 3.0),
        *span("c", "Writer", 2.0, 2.5, 7.0),
        *span("d", "Editor", 7.0, 7.0, 10.0),
        Event(kind="run_finished", ts=10.1, status="completed"),
    ]


def test_critical_path_of_a_diamond_follows_the_slow_branch():
    events = diamond_events()
    metrics = RunMetrics(list(reversed(events)), {}, DIAMOND_EDGES)  # order does not matter
    assert metrics.makespan == pytest.approx(10.0)
    path = metrics.critical_path()
    assert [step.task for step in path] == ["a", "c", "d"]
    assert [step.seconds for step in path] == pytest.approx([2.0, 4.5, 3.0])
    assert [step.share for step in path] == pytest.approx([0.2, 0.45, 0.3])
    assert isinstance(path[0], PathStep)
    task, seconds, share = path[1]  # unpacks as (task, seconds, share)
    assert (task, seconds, share) == ("c", pytest.approx(4.5), pytest.approx(0.45))
    # c waited 0.5 s for a Writer: the part of the makespan no task on the path ran
    assert metrics.critical_path_overhead() == pytest.approx(0.5)


def test_critical_path_of_a_chain_with_a_parallel_side_task():
    # chain x → y → z; a side task s runs alongside and finishes before z
    events = [*span("x", "A", 0, 0, 1), *span("y", "A", 1, 1, 4), *span("z", "A", 4, 4, 5),
              *span("s", "B", 0, 0, 4.5)]
    metrics = RunMetrics(events, {}, {"y": ["x"], "z": ["y"]})
    assert [s.task for s in metrics.critical_path()] == ["x", "y", "z"]
    assert sum(s.share for s in metrics.critical_path()) == pytest.approx(1.0)
    assert metrics.slowest(2) == [("s", 4.5), ("y", 3.0)]


def test_critical_path_ends_at_the_last_finish_even_off_the_long_chain():
    events = [*span("x", "A", 0, 0, 1), *span("y", "A", 1, 1, 2), *span("solo", "B", 0, 0, 6)]
    path = RunMetrics(events, {}, {"y": ["x"]}).critical_path()
    assert path == [PathStep("solo", 6.0, 1.0)]


def test_critical_path_without_timestamps_uses_execution_times():
    results = {t: TaskOutput(task_id=t, metadata={"execution_time": s})
               for t, s in {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}.items()}
    metrics = RunMetrics([], results, DIAMOND_EDGES)
    assert [s.task for s in metrics.critical_path()] == ["a", "b", "d"]
    assert metrics.makespan == pytest.approx(7.0)


def test_queueing_by_role():
    events = [
        *span("w1", "Writer", 0.0, 1.0, 2.0),
        *span("w2", "Writer", 0.0, 2.0, 3.0),
        *span("w3", "Writer", 0.0, 3.0, 4.0),
        *span("r1", "Researcher", 0.0, 0.0, 1.0),
        # queue_s reported by the supervisor wins over the timestamps
        Event(kind="task_ready", task="e1", ts=0.0),
        Event(kind="task_started", task="e1", agent_role="Editor", ts=9.0,
              data={"queue_s": 0.25}),
        Event(kind="task_finished", task="e1", agent_role="Editor", ts=10.0),
    ]
    queues = RunMetrics(events).queueing_by_role()
    assert isinstance(queues["Writer"], QueueStats)
    assert tuple(queues["Writer"]) == (3, pytest.approx(2.0), pytest.approx(2.9),
                                       pytest.approx(3.0))
    assert queues["Researcher"].mean == 0.0
    assert queues["Editor"].max == pytest.approx(0.25)
    hints = RunMetrics(events).suggestions()
    assert any(h.startswith("agent role Writer: mean queueing 2.0 s") and "add members" in h
               for h in hints)
    assert not any("Researcher" in h for h in hints)


def test_retries_count_once_per_task_not_as_new_queueing():
    events = [
        Event(kind="task_ready", task="t", ts=0.0),
        Event(kind="task_started", task="t", agent_role="A", ts=0.1),
        Event(kind="attempt_failed", task="t", ts=0.5, outcome="timeout"),
        Event(kind="retry", task="t", ts=0.6),
        Event(kind="task_started", task="t", agent_role="A", ts=1.6),
        Event(kind="llm_call", task="t", ts=2.0, tokens_prompt=10, tokens_completion=5,
              cost_usd=0.001),
        Event(kind="task_finished", task="t", status="completed", ts=2.0),
    ]
    metrics = RunMetrics(events)
    assert metrics.queueing_by_role()["A"].n == 1
    assert metrics.retry_counts == {"t": 1}
    assert metrics.success_rates == {"t": 0.5}
    assert metrics.token_usage == {"t": 15}
    assert metrics.execution_times["t"] == pytest.approx(1.9)
    ((task, seconds, share),) = metrics.critical_path()
    assert (task, seconds, share) == ("t", pytest.approx(1.9), pytest.approx(0.95))


def test_results_metadata_fills_per_task_metrics_and_summary():
    results = {
        "a": TaskOutput(task_id="a", metadata={"execution_time": 2.0, "retry_count": 0,
                                                "tokens_used": 120, "cost_usd": 0.01,
                                                "model": "m"}),
        "c": TaskOutput(task_id="c", metadata={"execution_time": 4.5, "retry_count": 2,
                                                "tokens_used": {"total_tokens": 900}}),
    }
    metrics = RunMetrics(diamond_events(), results, DIAMOND_EDGES)
    assert metrics.execution_times["c"] == 4.5
    assert metrics.retry_counts == {"a": 0, "c": 2}
    assert metrics.token_usage == {"a": 120, "c": 900}
    assert metrics.success_rates["a"] == 1.0
    text = metrics.summary()
    assert "makespan: 10.00 s" in text
    assert "critical path: a (2.00 s, 20%) -> c (4.50 s, 45%) -> d (3.00 s, 30%)" in text
    assert "Writer" in text
    assert any(h.startswith("task c: 2 retries") for h in metrics.suggestions())
    data = metrics.as_dict()
    assert data["critical_path"][1] == {"task": "c", "seconds": 4.5, "share": 0.45}


def test_failed_tasks_show_in_statuses_and_suggestions():
    events = [*span("a", "A", 0, 0, 1), *span("b", "A", 1, 1, 2, status="failed")]
    metrics = RunMetrics(events, {}, {"b": ["a"]})
    assert metrics.statuses == {"a": "completed", "b": "failed"}
    assert metrics.success_rates["b"] == 0.0
    assert any("failed tasks: b" in h for h in metrics.suggestions())


# -- the guide's MetricsCollector --------------------------------------------------------


class FakeTask:
    """Stands in for a ray-orch Task: ``execute()`` returns a TaskOutput."""

    def __init__(self, name: str, seconds: float, retries: int = 0) -> None:
        self.name, self.seconds, self.retries = name, seconds, retries

    def execute(self) -> TaskOutput:
        return TaskOutput(raw="ok", task_id=self.name, metadata={
            "execution_time": self.seconds, "retry_count": self.retries,
            "tokens_used": int(self.seconds * 100), "cost_usd": 0.0, "model": "stub"})


def test_metrics_collector_as_the_guide_writes_it():
    tasks: dict[str, Any] = {f"t{i}": FakeTask(f"t{i}", s, retries=i % 2)
                             for i, s in enumerate([0.5, 3.0, 1.0, 7.0, 2.0, 4.0, 0.1])}

    # Use metrics collector (the guide's code, verbatim)
    collector = MetricsCollector()

    for task_id, task in tasks.items():
        result = task.execute()
        collector.record_task(task_id, result)

    bottlenecks = collector.get_bottlenecks()
    print(f"Bottlenecks: {collector.get_bottlenecks()}")

    assert bottlenecks == [("t3", 7.0), ("t5", 4.0), ("t1", 3.0), ("t4", 2.0), ("t2", 1.0)]
    assert set(collector.metrics) == {"execution_times", "success_rates", "retry_counts",
                                      "token_usage"}
    assert collector.metrics["retry_counts"]["t1"] == 1
    assert collector.metrics["token_usage"]["t3"] == 700
    assert collector.metrics["success_rates"] == {
        f"t{i}": (0.5 if i % 2 else 1.0) for i in range(7)}


def test_metrics_collector_tolerates_missing_metadata():
    collector = MetricsCollector()
    collector.record_task("bare", TaskOutput(raw="x"))
    collector.record_task("none", TaskOutput(raw="x", metadata={"execution_time": None}))
    collector.record_all({"more": TaskOutput(metadata={"execution_time": 1.5})})
    assert collector.get_bottlenecks() == [("more", 1.5), ("bare", 0.0), ("none", 0.0)]
