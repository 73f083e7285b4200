"""Metrics: events → Prometheus samples, the batcher's flush rules, the hub over HTTP,
the dashboard's queries against the metric table, and the progress sink."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from ray_orch.core.events import Event, EventKind
from ray_orch.observe.metrics import (
    METRICS_DOC,
    EventBatcher,
    MetricsRegistry,
    dashboard_path,
    dashboard_queries,
    metrics_markdown,
)
from ray_orch.observe.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "run-7f3a9c2e"
ALLOWED_LABELS = {"workflow", "task", "agent_role", "model", "status", "outcome", "type",
                  "state", "route", "breaker", "kind", "le", "tool"}


def run_events(workflow: str = "wf", run_id: str = RUN_ID) -> list[Event]:
    """A small run: extract → analyse (one retry) with a cache miss, a decision, a
    breaker trip and pool / scheduler snapshots."""
    t0 = 1000.0

    def ev(kind: EventKind, ts: float, **kw: Any) -> Event:
        return Event(kind=kind, workflow=workflow, run_id=run_id, ts=t0 + ts, **kw)

    return [
        ev("run_started", 0.0, data={"tasks": 2}),
        ev("scheduler", 0.0, data={"running": 0, "ready": 1, "waiting": 1}),
        ev("task_ready", 0.0, task="extract"),
        ev("cache", 0.1, task="extract", outcome="miss"),
        ev("task_started", 0.5, task="extract", agent_role="Analyst"),
        ev("pool", 0.5, agent_role="Analyst", data={"in_flight": 1, "queued": 0, "size": 2}),
        ev("llm_call", 1.7, task="extract", agent_role="Analyst", model="gpt-4o-mini",
           duration_s=1.2, tokens_prompt=100, tokens_completion=20, cost_usd=0.002,
           outcome="ok"),
        ev("task_finished", 1.8, task="extract", agent_role="Analyst", status="completed",
           duration_s=1.3),
        ev("task_ready", 1.8, task="analyse"),
        ev("task_started", 2.0, task="analyse", agent_role="Writer"),
        ev("llm_call", 2.5, task="analyse", agent_role="Writer", model="gpt-4o-mini",
           duration_s=0.5, outcome="rate_limit"),
        ev("attempt_failed", 2.5, task="analyse", agent_role="Writer", outcome="rate_limit"),
        ev("breaker", 2.5, agent_role="Writer", data={"state": "open", "breaker": "Writer"}),
        ev("retry", 2.6, task="analyse", agent_role="Writer"),
        ev("task_started", 2.6, task="analyse", agent_role="Writer"),
        ev("breaker", 3.0, data={"state": "half_open", "breaker": "Writer"}),
        ev("llm_call", 4.0, task="analyse", agent_role="Writer", model="gpt-4o-mini",
           duration_s=1.4, tokens_prompt=300, tokens_completion=50, cost_usd=0.01),
        ev("breaker", 4.0, data={"state": "closed", "breaker": "Writer"}),
        ev("decision", 4.1, task="analyse", data={"route": "approve"}),
        ev("fallback", 4.2, task="analyse", agent_role="Backup"),
        ev("task_finished", 4.2, task="analyse", agent_role="Writer", status="completed",
           duration_s=2.2),
        ev("run_finished", 4.3, status="completed", duration_s=4.3),
    ]


def samples(registry: MetricsRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = registry.exposition().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(registry: MetricsRegistry, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples(registry).items() if n == name and wanted <= ls]
    assert found, f"no sample {name}{labels}"
    return sum(found)


# -- registry --------------------------------------------------------------------------


def test_apply_events_produces_expected_samples():
    reg = MetricsRegistry()
    events = run_events()
    assert reg.apply(events) == len(events)
    v = lambda name, **kw: value(reg, name, workflow="wf", **kw)  # noqa: E731
    assert v("rayorch_tasks_total", task="extract", agent_role="Analyst",
             status="completed") == 1
    assert v("rayorch_tasks_total", task="analyse", status="failed") == 0  # initialised
    assert v("rayorch_task_duration_seconds_sum", task="analyse") == pytest.approx(2.2)
    assert v("rayorch_task_duration_seconds_count", task="extract") == 1
    assert v("rayorch_retries_total", task="analyse") == 1
    assert v("rayorch_task_attempt_failures_total", outcome="rate_limit") == 1
    assert v("rayorch_fallbacks_total", task="analyse", agent_role="Backup") == 1
    assert v("rayorch_decisions_total", route="approve") == 1
    assert v("rayorch_cache_misses_total", task="extract") == 1
    assert v("rayorch_cache_hits_total", task="extract") == 0
    assert v("rayorch_runs_total", status="completed") == 1
    assert v("rayorch_runs_active") == 0
    assert v("rayorch_run_duration_seconds_count") == 1

    assert value(reg, "rayorch_tokens_total", type="prompt") == 400
    assert value(reg, "rayorch_tokens_total", type="completion") == 70
    assert value(reg, "rayorch_cost_usd_total", model="gpt-4o-mini") == pytest.approx(0.012)
    assert value(reg, "rayorch_llm_request_duration_seconds_count", outcome="ok") == 2
    assert value(reg, "rayorch_llm_request_duration_seconds_count", outcome="rate_limit") == 1
    # buckets reach minutes
    assert value(reg, "rayorch_llm_request_duration_seconds_bucket", le="600.0") == 3

    assert value(reg, "rayorch_breaker_state", breaker="Writer") == 0
    assert value(reg, "rayorch_breaker_transitions_total", breaker="Writer", state="open") == 1
    assert value(reg, "rayorch_breaker_transitions_total", state="half_open") == 1
    assert value(reg, "rayorch_breaker_transitions_total", state="closed") == 1

    # ready → started waits: extract 0.5 s (Analyst), analyse 0.2 s (Writer); the retry's
    # second start has no ready and adds nothing.
    assert value(reg, "rayorch_queue_wait_seconds_count", agent_role="Writer") == 1
    assert value(reg, "rayorch_queue_wait_seconds_sum", agent_role="Analyst") == pytest.approx(0.5)
    assert value(reg, "rayorch_queue_wait_seconds_sum", agent_role="Writer") == pytest.approx(0.2)
    assert value(reg, "rayorch_events_total", kind="task_finished") == 2


def test_no_label_holds_a_run_id_and_labels_are_bounded():
    reg = MetricsRegistry()
    reg.apply(run_events(run_id=RUN_ID))
    reg.apply([e.model_copy(update={"run_id": "run-other"}) for e in run_events()])
    for name, labels in samples(reg):
        for key, val in labels:
            assert key in ALLOWED_LABELS, f"{name} has unbounded label {key}"
            assert "run-" not in val, f"{name}{{{key}={val}}} holds a run id"


def test_metric_names_follow_prometheus_conventions():
    reg = MetricsRegistry()
    reg.apply(run_events())
    for doc in METRICS_DOC:
        assert doc.name.startswith("rayorch_")
        if doc.type == "counter":
            assert doc.name.endswith("_total"), doc.name
        if doc.type == "histogram":
            assert doc.name.endswith("_seconds"), doc.name
        assert set(doc.labels) <= ALLOWED_LABELS
    exposed = {f.name for f in text_string_to_metric_families(reg.exposition().decode())
               if not f.name.endswith("_created")}
    # prometheus_client reports counters without their _total suffix
    assert {d.name.removesuffix("_total") for d in METRICS_DOC} == exposed


def test_metrics_doc_is_in_docs():
    text = (ROOT / "docs" / "METRICS.md").read_text()
    assert metrics_markdown() in text


def test_concurrent_runs_sum_and_finished_run_leaves_the_gauges():
    reg = MetricsRegistry()
    reg.apply([
        Event(kind="scheduler", workflow="wf", run_id="a",
              data={"running": 2, "ready": 3, "waiting": 1}),
        Event(kind="scheduler", workflow="wf", run_id="b",
              data={"running": 1, "ready": 0, "waiting": 4}),
        Event(kind="pool", agent_role="R", run_id="a", data={"in_flight": 2, "size": 4}),
        Event(kind="pool", agent_role="R", run_id="b", data={"in_flight": 1, "size": 2,
                                                             "queued": 5}),
    ])
    assert value(reg, "rayorch_tasks_running", workflow="wf") == 3
    assert value(reg, "rayorch_tasks_waiting", workflow="wf") == 5
    assert value(reg, "rayorch_pool_size", agent_role="R") == 6
    assert value(reg, "rayorch_pool_queue_depth", agent_role="R") == 5
    reg.apply([Event(kind="run_finished", workflow="wf", run_id="a", status="completed")])
    assert value(reg, "rayorch_tasks_running", workflow="wf") == 1
    assert value(reg, "rayorch_pool_in_flight", agent_role="R") == 1


def test_malformed_events_are_counted_not_raised():
    reg = MetricsRegistry()
    applied = reg.apply([{"kind": "nonsense"}, {"task": "x"},
                         {"kind": "breaker", "data": {"state": "melted"}},
                         {"kind": "retry", "task": "t"}])
    assert applied == 1
    assert value(reg, "rayorch_events_dropped_total") == 3


def test_missing_labels_read_unknown_and_long_values_are_cut():
    reg = MetricsRegistry()
    reg.apply([Event(kind="task_finished", task="x" * 500, status="completed")])
    (labels,) = [dict(ls) for (n, ls) in samples(reg) if n == "rayorch_tasks_total"]
    assert labels["agent_role"] == "unknown"
    assert len(labels["task"]) <= 120


# -- batcher ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_batcher_flushes_at_max_events():
    batches: list[list[dict[str, Any]]] = []
    b = EventBatcher(batches.append, max_events=200, clock=FakeClock(), background=False)
    for i in range(450):
        b.add(Event(kind="retry", task=f"t{i % 3}"))
    assert [len(x) for x in batches] == [200, 200]
    assert b.flush() == 50
    assert b.flush() == 0
    assert all(isinstance(e, dict) and e["kind"] == "retry" for e in batches[0])


def test_batcher_flushes_when_oldest_event_is_old_enough():
    clock = FakeClock()
    batches: list[list[dict[str, Any]]] = []
    b = EventBatcher(batches.append, interval_s=0.25, clock=clock, background=False)
    b.add({"kind": "retry", "task": "a"})
    clock.now = 0.2
    b.add({"kind": "retry", "task": "b"})
    assert batches == []
    clock.now = 0.26
    b.add({"kind": "retry", "task": "c"})
    assert [[e["task"] for e in x] for x in batches] == [["a", "b", "c"]]


def test_batcher_background_thread_delivers_the_tail():
    batches: list[list[dict[str, Any]]] = []
    b = EventBatcher(batches.append, interval_s=0.1)
    try:
        b.add(Event(kind="retry", task="a"))
        deadline = time.monotonic() + 2.0
        while not batches and time.monotonic() < deadline:
            time.sleep(0.02)
        assert batches and batches[0][0]["task"] == "a"
    finally:
        b.close()


def test_batcher_survives_a_failing_sink_and_close_flushes():
    calls: list[int] = []

    def sink(batch: list[dict[str, Any]]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise ConnectionError("hub gone")

    with EventBatcher(sink, max_events=2, background=False) as b:
        b.add(Event(kind="retry"))
        b.add(Event(kind="retry"))  # delivered, sink raises: dropped, no exception
        b.add(Event(kind="retry"))
    assert calls == [2, 1]
    assert b.dropped == 2 and b.delivered == 1


# -- dashboards ------------------------------------------------------------------------


def test_dashboard_queries_use_only_documented_metrics():
    documented = {d.name for d in METRICS_DOC}
    queries = dashboard_queries()
    assert len(queries) >= 15
    used: set[str] = set()
    for title, expr in queries:
        assert "$" not in expr, f"{title}: unsubstituted variable in {expr}"
        for name in re.findall(r"\brayorch_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in documented or base in documented, f"{title}: unknown {name}"
            used.add(name if name in documented else base)
    titles = " ".join(t.lower() for t, _ in queries)
    for topic in ("throughput", "latency", "slowest", "saturation", "queue depth",
                  "retries", "tokens", "cost", "llm latency"):
        assert topic in titles


def test_dashboard_json_has_datasource_variable():
    model = json.loads(dashboard_path().read_text())
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in model["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"


# -- hub -------------------------------------------------------------------------------


def test_hub_serves_pushed_events_over_http(ray_session):
    from actors.metrics_hub import get_metrics_hub

    ray = ray_session
    hub, url = get_metrics_hub()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)
    workflow = "hub-test"
    assert ray.get(hub.push.remote([e.model_dump(mode="json")
                                    for e in run_events(workflow)])) == len(run_events())
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    assert (f'rayorch_tasks_total{{agent_role="Analyst",status="completed",task="extract",'
            f'workflow="{workflow}"}} 1.0') in body
    assert RUN_ID not in body
    # get-or-create: a second call finds the same actor
    _hub2, url2 = get_metrics_hub()
    assert url2 == url


def test_batcher_feeds_the_hub_within_a_second(ray_session):
    from actors.metrics_hub import get_metrics_hub

    hub, url = get_metrics_hub()
    batcher = EventBatcher(lambda batch: hub.push.remote(batch))
    try:
        batcher.add(Event(kind="decision", workflow="batcher-test", task="route",
                          data={"route": "left"}))
        deadline = time.monotonic() + 5.0
        body = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = resp.read().decode()
            if 'workflow="batcher-test"' in body:
                break
            time.sleep(0.1)
        assert 'route="left"' in body
    finally:
        batcher.close()


# -- progress sink ---------------------------------------------------------------------


def test_progress_is_silent_off_a_terminal():
    out = io.StringIO()
    with Progress(console=Console(file=out)) as progress:
        for e in run_events():
            progress(e)
    assert not progress.live
    assert out.getvalue() == ""
    assert progress.done == 2 and progress.total == 2


def test_progress_verbose_prints_one_line_per_task():
    out = io.StringIO()
    progress = Progress(verbose=True, console=Console(file=out, width=200))
    for e in run_events():
        progress(e.model_dump())
    lines = out.getvalue().splitlines()
    assert lines == ["[1/2] extract completed in 1.30 s", "[2/2] analyse completed in 2.20 s"]


def test_progress_live_on_a_terminal_and_off_when_asked(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    monkeypatch.setenv("RAY_ORCH_PROGRESS", "1")
    progress = Progress(console=console)
    assert progress.live
    for e in run_events():
        progress(e)
    assert "2/2" in out.getvalue()
    assert progress._display is None  # stopped by run_finished
    assert not Progress(console=console, enabled=False).live
    monkeypatch.setenv("RAY_ORCH_PROGRESS", "0")
    assert not Progress(console=console).live
