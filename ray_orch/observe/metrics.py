"""Prometheus metrics of ray-orch: definitions, applying ``Event``s, batching, dashboards.

Every metric lives on a private ``CollectorRegistry`` held by a ``MetricsRegistry``, so
two registries (the hub's, a test's) never share state and nothing lands on the
process-global default registry. Names follow Prometheus conventions (prefix
``rayorch_``, base units, ``_total`` for counters, ``_seconds`` for durations) and labels
are bounded: workflow, task name, agent role, model, status, outcome (plus the closed
sets ``type``, ``state``, ``route``, ``breaker``, ``kind``). A run id or a prompt never
becomes a label value; ``run_id`` is only used inside the registry to keep concurrent
runs of one workflow apart.

``METRICS_DOC`` is the table of every metric (``docs/METRICS.md`` is generated from it by
``metrics_markdown()``). ``EventBatcher`` is what the Supervisor puts in front of the
MetricsHub so that metrics are visible within ~1 s without one actor call per event.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError

from ray_orch.core.events import Event

__all__ = [
    "METRICS_DOC",
    "EventBatcher",
    "MetricDoc",
    "MetricsRegistry",
    "dashboard_path",
    "dashboard_queries",
    "metrics_markdown",
]

_log = logging.getLogger(__name__)

# Buckets reach the durations each thing really takes: LLM calls up to 10 min, tasks
# (which may loop over many rows) up to an hour, queueing from 1 ms.
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_RUN_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

_BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
_MAX_LABEL_LEN = 120
_MAX_PENDING_READY = 50_000
_UNKNOWN = "unknown"


class MetricDoc(NamedTuple):
    """One row of ``METRICS_DOC``: the exposed name, the Prometheus type, labels, meaning."""

    name: str
    type: str
    labels: tuple[str, ...]
    meaning: str


class _Spec(NamedTuple):
    doc: MetricDoc
    buckets: tuple[float, ...] | None = None


_TASK_LABELS = ("workflow", "task", "agent_role")

_SPECS: tuple[_Spec, ...] = (
    # tasks
    _Spec(MetricDoc("rayorch_tasks_total", "counter", (*_TASK_LABELS, "status"),
                    "Tasks finished, by final status (completed, failed, skipped).")),
    _Spec(MetricDoc("rayorch_task_duration_seconds", "histogram", (*_TASK_LABELS, "status"),
                    "Wall time of a task from its first attempt's start to its finish "
                    "(retries included, queueing excluded)."), _TASK_BUCKETS),
    _Spec(MetricDoc("rayorch_task_attempt_failures_total", "counter",
                    (*_TASK_LABELS, "outcome"),
                    "Failed task attempts, by error kind (rate_limit, timeout, server, "
                    "invalid_output, guardrail, error); a retry may follow.")),
    _Spec(MetricDoc("rayorch_retries_total", "counter", _TASK_LABELS,
                    "New attempts scheduled after a failed attempt.")),
    _Spec(MetricDoc("rayorch_fallbacks_total", "counter", _TASK_LABELS,
                    "Tasks taken over by their fallback agent (agent_role: the fallback's).")),
    _Spec(MetricDoc("rayorch_decisions_total", "counter", ("workflow", "task", "route"),
                    "Decision tasks' routing outcomes, by the route key taken.")),
    # LLM
    _Spec(MetricDoc("rayorch_llm_request_duration_seconds", "histogram",
                    ("model", "agent_role", "outcome"),
                    "Duration of one model call, by outcome (success or the error kind)."),
          _LLM_BUCKETS),
    _Spec(MetricDoc("rayorch_tokens_total", "counter", ("model", "agent_role", "type"),
                    "Tokens used by model calls; type is prompt or completion.")),
    _Spec(MetricDoc("rayorch_cost_usd_total", "counter", ("model", "agent_role"),
                    "Cost of model calls in US dollars (litellm's price table).")),
    # tools
    _Spec(MetricDoc("rayorch_tool_calls_total", "counter", ("tool", "outcome"),
                    "Tool calls made by agents, by tool and outcome (ok or error).")),
    _Spec(MetricDoc("rayorch_tool_call_duration_seconds", "histogram", ("tool", "outcome"),
                    "Duration of one tool call (local, remote Ray task or MCP)."),
          _LLM_BUCKETS),
    # resilience and cache
    _Spec(MetricDoc("rayorch_breaker_state", "gauge", ("breaker",),
                    "Circuit breaker state: 0 closed, 1 half-open, 2 open.")),
    _Spec(MetricDoc("rayorch_breaker_transitions_total", "counter", ("breaker", "state"),
                    "Circuit breaker state changes, by the state entered.")),
    _Spec(MetricDoc("rayorch_cache_hits_total", "counter", ("workflow", "task"),
                    "Task results served from the result cache.")),
    _Spec(MetricDoc("rayorch_cache_misses_total", "counter", ("workflow", "task"),
                    "Result cache lookups that found nothing usable.")),
    # pools and scheduler
    _Spec(MetricDoc("rayorch_pool_in_flight", "gauge", ("agent_role",),
                    "Task attempts running on the agent pool's members.")),
    _Spec(MetricDoc("rayorch_pool_size", "gauge", ("agent_role",),
                    "Members (agent actors) in the agent pool.")),
    _Spec(MetricDoc("rayorch_pool_queue_depth", "gauge", ("agent_role",),
                    "Task attempts waiting for a free slot in the agent pool.")),
    _Spec(MetricDoc("rayorch_queue_wait_seconds", "histogram", ("agent_role",),
                    "Time a task waited between ready (inputs done) and started (given "
                    "to an agent)."), _QUEUE_BUCKETS),
    _Spec(MetricDoc("rayorch_tasks_running", "gauge", ("workflow",),
                    "Tasks with an attempt in progress, summed over active runs.")),
    _Spec(MetricDoc("rayorch_tasks_ready", "gauge", ("workflow",),
                    "Tasks whose inputs are ready, waiting for an agent.")),
    _Spec(MetricDoc("rayorch_tasks_waiting", "gauge", ("workflow",),
                    "Tasks waiting for upstream tasks.")),
    # runs and the hub itself
    _Spec(MetricDoc("rayorch_runs_total", "counter", ("workflow", "status"),
                    "Runs finished, by status (completed, failed, cancelled).")),
    _Spec(MetricDoc("rayorch_runs_active", "gauge", ("workflow",),
                    "Runs started and not yet finished.")),
    _Spec(MetricDoc("rayorch_run_duration_seconds", "histogram", ("workflow", "status"),
                    "Makespan of finished runs."), _RUN_BUCKETS),
    _Spec(MetricDoc("rayorch_events_total", "counter", ("kind",),
                    "Events applied to this registry, by kind.")),
    _Spec(MetricDoc("rayorch_events_dropped_total", "counter", (),
                    "Events that could not be applied (malformed).")),
)

METRICS_DOC: tuple[MetricDoc, ...] = tuple(spec.doc for spec in _SPECS)
"""Every metric ray-orch exports: (name, type, labels, meaning)."""


def metrics_markdown() -> str:
    """Render ``METRICS_DOC`` as the Markdown table kept in ``docs/METRICS.md``.

    Returns:
        A Markdown table, one row per metric.

    Example:
        >>> "rayorch_tasks_total" in metrics_markdown()
        True
    """
    rows = ["| name | type | labels | meaning |", "|---|---|---|---|"]
    for doc in METRICS_DOC:
        labels = ", ".join(doc.labels) or "-"
        rows.append(f"| `{doc.name}` | {doc.type} | {labels} | {doc.meaning} |")
    return "\n".join(rows) + "\n"


def _label(value: Any) -> str:
    if value is None or value == "":
        return _UNKNOWN
    text = str(value)
    return text[:_MAX_LABEL_LEN]


class MetricsRegistry:
    """ray-orch's metrics on a private registry, updated by applying ``Event``s.

    Gauges that describe a run (scheduler counts, pools keyed by run) are kept per run
    internally and exported summed per workflow / agent role, so concurrent runs of one
    workflow do not overwrite each other; a ``run_finished`` event removes the run's share.

    Example:
        >>> reg = MetricsRegistry()
        >>> reg.apply([{"kind": "task_finished", "task": "extract", "status": "completed",
        ...             "duration_s": 1.5, "agent_role": "Analyst"}])
        1
        >>> b'rayorch_tasks_total{agent_role="Analyst"' in reg.exposition()
        True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for spec in _SPECS:
            doc = spec.doc
            if doc.type == "counter":
                metric: Any = Counter(doc.name, doc.meaning, doc.labels, registry=self.registry)
            elif doc.type == "gauge":
                metric = Gauge(doc.name, doc.meaning, doc.labels, registry=self.registry)
            else:
                metric = Histogram(doc.name, doc.meaning, doc.labels, registry=self.registry,
                                   buckets=spec.buckets or Histogram.DEFAULT_BUCKETS)
            self._metrics[doc.name] = metric
        self._lock = threading.Lock()
        # (workflow, run_id) -> {"running": n, "ready": n, "waiting": n}
        self._sched: dict[tuple[str, str], dict[str, float]] = {}
        # (agent_role, source) -> {"in_flight": n, "queued": n, "size": n}; source is
        # data["pool"] for pools shared across runs, else the run id.
        self._pools: dict[tuple[str, str], dict[str, float]] = {}
        self._active: dict[str, set[str]] = {}
        self._breakers: dict[str, str] = {}
        # (run_id, workflow, task) -> ready timestamps not yet matched by a start
        self._ready: OrderedDict[tuple[str, str, str], list[float]] = OrderedDict()

    def apply(self, events: Iterable[Event | dict[str, Any]]) -> int:
        """Update the metrics from a batch of events.

        Args:
            events: ``Event``s or their ``model_dump()`` dicts, in the order they happened.

        Returns:
            How many events were applied (malformed ones are counted in
            ``rayorch_events_dropped_total`` and skipped).

        Example:
            >>> MetricsRegistry().apply([Event(kind="retry", task="t")])
            1
        """
        applied = 0
        with self._lock:
            for raw in events:
                try:
                    event = raw if isinstance(raw, Event) else Event.model_validate(raw)
                    self._apply_one(event)
                except (ValidationError, TypeError, ValueError) as exc:
                    _log.debug("dropping malformed event %r: %s", raw, exc)
                    self._metrics["rayorch_events_dropped_total"].inc()
                    continue
                self._metrics["rayorch_events_total"].labels(event.kind).inc()
                applied += 1
        return applied

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``/metrics`` serves).

        Returns:
            The exposition bytes.
        """
        return generate_latest(self.registry)

    # -- one event ---------------------------------------------------------------------

    def _apply_one(self, ev: Event) -> None:
        m = self._metrics
        task_labels = (_label(ev.workflow), _label(ev.task), _label(ev.agent_role))
        kind = ev.kind
        if kind == "run_started":
            self._active.setdefault(_label(ev.workflow), set()).add(ev.run_id)
            self._set_active(ev.workflow)
        elif kind == "run_finished":
            self._finish_run(ev)
        elif kind == "task_ready":
            key = (ev.run_id, _label(ev.workflow), _label(ev.task))
            self._ready.setdefault(key, []).append(ev.ts)
            self._ready.move_to_end(key)
            while len(self._ready) > _MAX_PENDING_READY:
                self._ready.popitem(last=False)
        elif kind == "task_started":
            self._init_task_series(task_labels)
            self._observe_queue_wait(ev)
        elif kind == "task_finished":
            status = _label(ev.status or "completed")
            m["rayorch_tasks_total"].labels(*task_labels, status).inc()
            if ev.duration_s is not None and ev.duration_s >= 0:
                m["rayorch_task_duration_seconds"].labels(*task_labels, status).observe(
                    ev.duration_s)
        elif kind == "attempt_failed":
            m["rayorch_task_attempt_failures_total"].labels(
                *task_labels, _label(ev.outcome or "error")).inc()
        elif kind == "retry":
            m["rayorch_retries_total"].labels(*task_labels).inc()
        elif kind == "fallback":
            m["rayorch_fallbacks_total"].labels(*task_labels).inc()
        elif kind == "llm_call":
            self._apply_llm_call(ev)
        elif kind == "tool_call":
            labels = (_label(ev.data.get("tool")), _label(ev.outcome or "ok"))
            m["rayorch_tool_calls_total"].labels(*labels).inc()
            if ev.duration_s is not None and ev.duration_s >= 0 and not ev.data.get("replayed"):
                m["rayorch_tool_call_duration_seconds"].labels(*labels).observe(ev.duration_s)
        elif kind == "decision":
            route = ev.data.get("route", ev.outcome)
            m["rayorch_decisions_total"].labels(
                _label(ev.workflow), _label(ev.task), _label(route)).inc()
        elif kind == "cache":
            labels = (_label(ev.workflow), _label(ev.task))
            hits = m["rayorch_cache_hits_total"].labels(*labels)
            misses = m["rayorch_cache_misses_total"].labels(*labels)
            (hits if ev.outcome == "hit" else misses).inc()
        elif kind == "breaker":
            self._apply_breaker(ev)
        elif kind == "pool":
            source = str(ev.data.get("pool") or ev.run_id)
            self._pools[(_label(ev.agent_role), source)] = {
                "in_flight": float(ev.data.get("in_flight", 0)),
                "queued": float(ev.data.get("queued", 0)),
                "size": float(ev.data.get("size", 0)),
            }
            self._set_pool(_label(ev.agent_role))
        elif kind == "scheduler":
            self._sched[(_label(ev.workflow), ev.run_id)] = {
                state: float(ev.data.get(state, 0)) for state in ("running", "ready", "waiting")
            }
            self._set_sched(_label(ev.workflow))

    def _init_task_series(self, task_labels: tuple[str, str, str]) -> None:
        # Create the per-task counters at 0 as soon as a task starts, so that rate() of
        # failures, retries and fallbacks is 0 rather than absent (Prometheus practice).
        m = self._metrics
        for status in ("completed", "failed"):
            m["rayorch_tasks_total"].labels(*task_labels, status)
        m["rayorch_retries_total"].labels(*task_labels)
        m["rayorch_fallbacks_total"].labels(*task_labels)

    def _observe_queue_wait(self, ev: Event) -> None:
        key = (ev.run_id, _label(ev.workflow), _label(ev.task))
        pending = self._ready.get(key)
        ready_ts = pending.pop(0) if pending else None
        if pending is not None and not pending:
            del self._ready[key]
        wait = ev.data.get("queue_s")
        if wait is None and ready_ts is not None:
            wait = max(0.0, ev.ts - ready_ts)
        if wait is not None:
            self._metrics["rayorch_queue_wait_seconds"].labels(_label(ev.agent_role)).observe(
                float(wait))

    def _apply_llm_call(self, ev: Event) -> None:
        m = self._metrics
        model, role = _label(ev.model), _label(ev.agent_role)
        if ev.duration_s is not None and ev.duration_s >= 0:
            m["rayorch_llm_request_duration_seconds"].labels(
                model, role, _label(ev.outcome or "ok")).observe(ev.duration_s)
        # Both token series exist from the first call on, so prompt/completion panels
        # never miss a series.
        m["rayorch_tokens_total"].labels(model, role, "prompt").inc(max(0, ev.tokens_prompt))
        m["rayorch_tokens_total"].labels(model, role, "completion").inc(
            max(0, ev.tokens_completion))
        m["rayorch_cost_usd_total"].labels(model, role).inc(max(0.0, ev.cost_usd))

    def _apply_breaker(self, ev: Event) -> None:
        name = _label(ev.data.get("breaker") or ev.agent_role or ev.model)
        state = str(ev.data.get("state", "closed")).replace("-", "_")
        if state not in _BREAKER_STATES:
            raise ValueError(f"breaker event: unknown state {state!r}")
        previous = self._breakers.get(name, "closed")
        self._breakers[name] = state
        self._metrics["rayorch_breaker_state"].labels(name).set(_BREAKER_STATES[state])
        transitions = self._metrics["rayorch_breaker_transitions_total"]
        for known in ("open", "half_open", "closed"):
            transitions.labels(name, known)
        if state != previous:
            transitions.labels(name, state).inc()

    def _finish_run(self, ev: Event) -> None:
        workflow, status = _label(ev.workflow), _label(ev.status or "completed")
        self._metrics["rayorch_runs_total"].labels(workflow, status).inc()
        if ev.duration_s is not None and ev.duration_s >= 0:
            self._metrics["rayorch_run_duration_seconds"].labels(workflow, status).observe(
                ev.duration_s)
        self._active.get(workflow, set()).discard(ev.run_id)
        self._set_active(workflow)
        if self._sched.pop((workflow, ev.run_id), None) is not None:
            self._set_sched(workflow)
        for pool_key in [k for k in self._pools if k[1] == ev.run_id]:
            del self._pools[pool_key]
            self._set_pool(pool_key[0])
        for ready_key in [k for k in self._ready if k[0] == ev.run_id and k[1] == workflow]:
            del self._ready[ready_key]

    def _set_active(self, workflow: str) -> None:
        runs = self._active.get(_label(workflow), set())
        self._metrics["rayorch_runs_active"].labels(_label(workflow)).set(len(runs))

    def _set_sched(self, workflow: str) -> None:
        totals = {"running": 0.0, "ready": 0.0, "waiting": 0.0}
        for (wf, _run), counts in self._sched.items():
            if wf == workflow:
                for state in totals:
                    totals[state] += counts[state]
        for state, value in totals.items():
            self._metrics[f"rayorch_tasks_{state}"].labels(workflow).set(value)

    def _set_pool(self, role: str) -> None:
        totals = {"in_flight": 0.0, "queued": 0.0, "size": 0.0}
        for (r, _source), counts in self._pools.items():
            if r == role:
                for field in totals:
                    totals[field] += counts[field]
        m = self._metrics
        m["rayorch_pool_in_flight"].labels(role).set(totals["in_flight"])
        m["rayorch_pool_queue_depth"].labels(role).set(totals["queued"])
        m["rayorch_pool_size"].labels(role).set(totals["size"])


class EventBatcher:
    """Buffers events and hands them to a sink in batches.

    A batch is delivered when ``max_events`` are buffered, or when the oldest buffered
    event is ``interval_s`` old (checked on ``add`` and by a daemon thread, so the tail of
    a quiet run is not held back), or on ``flush()`` / ``close()``. Batches are delivered
    in order, one at a time. A sink that raises loses that batch (counted in ``dropped``)
    but never breaks the caller: metrics must not fail a run.

    Args:
        sink: called with a list of event dicts, e.g. ``lambda b: hub.push.remote(b)``;
            it should not block.
        interval_s: longest time an event waits in the buffer.
        max_events: batch size that triggers an immediate delivery.
        clock: monotonic clock (injectable for tests).
        background: run the timer thread; without it only ``add``/``flush`` deliver.

    Example:
        >>> batches = []
        >>> with EventBatcher(batches.append, background=False) as b:
        ...     b.add(Event(kind="retry", task="t"))
        >>> len(batches[0])
        1
    """

    def __init__(self, sink: Callable[[list[dict[str, Any]]], Any], *,
                 interval_s: float = 0.25, max_events: int = 200,
                 clock: Callable[[], float] = time.monotonic, background: bool = True) -> None:
        self._sink = sink
        self.interval_s = interval_s
        self.max_events = max_events
        self._clock = clock
        self._background = background
        self._buffer: list[Event | dict[str, Any]] = []
        self._oldest: float | None = None
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.delivered = 0

    def add(self, event: Event | dict[str, Any]) -> None:
        """Buffer one event; deliver the buffer if it is full or old enough.

        Args:
            event: an ``Event`` or its dict form.
        """
        with self._lock:
            if not self._buffer:
                self._oldest = self._clock()
            self._buffer.append(event)
            due = self._due_locked()
        if self._background and self._thread is None and not self._stop.is_set():
            self._start_thread()
        if due:
            self.flush()

    def flush(self) -> int:
        """Deliver everything buffered now.

        Returns:
            The number of events handed to the sink (0 when empty or the sink failed).
        """
        with self._deliver_lock:
            with self._lock:
                batch, self._buffer, self._oldest = self._buffer, [], None
            if not batch:
                return 0
            payload = [e.model_dump(mode="json") if isinstance(e, Event) else dict(e)
                       for e in batch]
            try:
                self._sink(payload)
            except Exception as exc:  # a metrics sink must never fail the run
                self.dropped += len(payload)
                _log.warning("dropping %d metric events: %s", len(payload), exc)
                return 0
            self.delivered += len(payload)
            return len(payload)

    def close(self) -> None:
        """Stop the timer thread and deliver what is left."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(1.0, self.interval_s * 4))
        self.flush()

    def __enter__(self) -> EventBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _due_locked(self) -> bool:
        if len(self._buffer) >= self.max_events:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.interval_s

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="rayorch-event-batcher",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s / 2):
            with self._lock:
                due = bool(self._buffer) and self._due_locked()
            if due:
                self.flush()


# -- dashboards ----------------------------------------------------------------------------

_DASHBOARD_DIR = Path(__file__).parent.parent / "dashboards"
_DEFAULT_VARIABLES = {
    "workflow": ".*",
    "agent_role": ".*",
    "model": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def dashboard_path(name: str = "grafana-dashboard.json") -> Path:
    """Where a shipped dashboard file lives.

    Args:
        name: ``grafana-dashboard.json``, ``grafana-provisioning.yml`` or ``prometheus.yml``.

    Returns:
        The file's path inside the installed package.
    """
    return _DASHBOARD_DIR / name


def dashboard_queries(variables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Every PromQL query of the shipped Grafana dashboard, ready to send to Prometheus.

    Grafana variables (``$workflow``, ``$__rate_interval``, ...) are replaced by
    ``variables`` or by defaults that select everything (``.*``, ``1m``, ``5m``).

    Args:
        variables: values for dashboard variables, overriding the defaults.

    Returns:
        ``(panel title, expr)`` for every target of every panel, in dashboard order.

    Example:
        >>> any(title.startswith("Throughput") for title, _ in dashboard_queries())
        True
    """
    values = {**_DEFAULT_VARIABLES, **(variables or {})}
    model = json.loads(dashboard_path().read_text())

    def substitute(expr: str) -> str:
        def repl(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return values.get(name, match.group(0))

        return _VARIABLE.sub(repl, expr)

    def panels(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    queries: list[tuple[str, str]] = []
    for panel in panels(model.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((panel["title"], substitute(target["expr"])))
    return queries
