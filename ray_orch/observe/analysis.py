"""After a run: where the time went. Bottlenecks, critical path, queueing per agent role.

``RunMetrics`` is built from what a run leaves behind: its ``Event``s (timestamps of
ready / started / finished), its results (``TaskOutput.metadata``) and its dependency
edges. ``MetricsCollector`` is the guide's class, kept working as the guide writes it.
Plain Python: no Ray, no Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, NamedTuple

from ray_orch.core.events import Event

__all__ = ["MetricsCollector", "PathStep", "QueueStats", "RunMetrics"]

_FAILED = {"failed", "error"}
# Order of events that share a timestamp: a task is ready before it starts, starts before
# it finishes (clocks are coarse; a supervisor may stamp all three in one tick).
_RANK = {"run_started": 0, "task_ready": 1, "task_started": 2, "task_finished": 4,
         "run_finished": 5}


class PathStep(NamedTuple):
    """One task on the critical path: its run time and that time's share of the makespan."""

    task: str
    seconds: float
    share: float


class QueueStats(NamedTuple):
    """Ready→started waits of one agent role: how many, and mean / p95 / max seconds."""

    n: int
    mean: float
    p95: float
    max: float


@dataclass(kw_only=True)
class _Span:
    """One execution of a task, from the events (a loop back in the graph adds another)."""

    ready: float | None = None
    start: float | None = None
    finish: float | None = None
    status: str | None = None
    role: str | None = None
    attempts: int = 0
    queue_s: float | None = None


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start, end)`` spans (parallel calls once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (the method numpy uses by default)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _meta(output: Any) -> Mapping[str, Any]:
    meta = getattr(output, "metadata", None)
    if meta is None and isinstance(output, Mapping):
        meta = output.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _tokens(value: Any) -> int:
    # tokens_used may be a count or litellm-style usage ({"total_tokens": n, ...}).
    if isinstance(value, Mapping):
        if "total_tokens" in value:
            return int(_number(value["total_tokens"]))
        return int(sum(_number(v) for k, v in value.items() if k.endswith("tokens")))
    return int(_number(value))


@dataclass
class RunMetrics:
    """Per-task metrics and bottleneck analysis of one finished run.

    Args:
        events: the run's events (``Event`` or dicts), in any order.
        results: final ``TaskOutput``s by task name (anything with a ``.metadata`` dict:
            ``execution_time``, ``retry_count``, ``tokens_used``, ``cost_usd``, ``model``).
        edges: each task's upstream tasks (``{task: [upstream, ...]}``).

    Attributes:
        execution_times: seconds per task (metadata, else from the events).
        success_rates: share of a task's attempts that succeeded.
        retry_counts: retries per task.
        token_usage: tokens per task.
        cost_usd: cost per task.
        statuses: final status per task (completed, failed, skipped).
        tool_times: wall seconds per task spent in tool calls (parallel calls counted
            once), from ``tool_call`` events.
        makespan: seconds from the run's start to its last task's finish.

    Example:
        >>> ev = [Event(kind="task_started", task="a", ts=0.0),
        ...       Event(kind="task_finished", task="a", ts=2.0, status="completed")]
        >>> RunMetrics(ev).critical_path()
        [PathStep(task='a', seconds=2.0, share=1.0)]
    """

    events: Sequence[Event | Mapping[str, Any]] = ()
    results: Mapping[str, Any] = field(default_factory=dict)
    edges: Mapping[str, Sequence[str]] = field(default_factory=dict)

    execution_times: dict[str, float] = field(init=False, default_factory=dict)
    success_rates: dict[str, float] = field(init=False, default_factory=dict)
    retry_counts: dict[str, int] = field(init=False, default_factory=dict)
    token_usage: dict[str, int] = field(init=False, default_factory=dict)
    cost_usd: dict[str, float] = field(init=False, default_factory=dict)
    statuses: dict[str, str] = field(init=False, default_factory=dict)
    tool_times: dict[str, float] = field(init=False, default_factory=dict)
    makespan: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._events = sorted(
            (e if isinstance(e, Event) else Event.model_validate(e) for e in self.events),
            key=lambda e: (e.ts, _RANK.get(e.kind, 3)))
        self._spans: dict[str, list[_Span]] = {}
        self._run_start: float | None = None
        self._run_end: float | None = None
        self._read_events()
        self._read_results()

    # -- building ------------------------------------------------------------------------

    def _read_events(self) -> None:
        retries: dict[str, int] = {}
        tokens: dict[str, int] = {}
        cost: dict[str, float] = {}
        attempts: dict[str, int] = {}
        successes: dict[str, int] = {}
        tool_spans: dict[str, list[tuple[float, float]]] = {}
        for ev in self._events:
            if ev.kind == "run_started":
                self._run_start = ev.ts if self._run_start is None else self._run_start
            elif ev.kind == "run_finished":
                self._run_end = ev.ts
            if ev.task is None:
                continue
            task = ev.task
            spans = self._spans.setdefault(task, [])
            span = spans[-1] if spans else None
            if ev.kind == "task_ready":
                if span is None or span.finish is not None or span.start is not None:
                    span = _Span()
                    spans.append(span)
                span.ready = ev.ts
            elif ev.kind == "task_started":
                if span is None or span.finish is not None:
                    span = _Span()
                    spans.append(span)
                if span.start is None:
                    span.start = ev.ts
                    if "queue_s" in ev.data:
                        span.queue_s = _number(ev.data["queue_s"])
                span.role = ev.agent_role or span.role
                span.attempts += 1
                attempts[task] = attempts.get(task, 0) + 1
            elif ev.kind == "task_finished":
                if span is None or span.finish is not None:
                    span = _Span()
                    spans.append(span)
                span.finish = ev.ts
                span.status = ev.status or "completed"
                span.role = span.role or ev.agent_role
                if span.queue_s is None and "queue_s" in ev.data:
                    span.queue_s = _number(ev.data["queue_s"])
                if span.status == "completed":
                    successes[task] = successes.get(task, 0) + 1
                self.statuses[task] = span.status
                if ev.duration_s is not None:
                    self.execution_times[task] = float(ev.duration_s)
                elif span.start is not None:
                    self.execution_times[task] = ev.ts - span.start
            elif ev.kind == "retry":
                retries[task] = retries.get(task, 0) + 1
            elif ev.kind == "llm_call":
                tokens[task] = tokens.get(task, 0) + ev.tokens_prompt + ev.tokens_completion
                cost[task] = cost.get(task, 0.0) + ev.cost_usd
            elif ev.kind == "tool_call" and ev.duration_s and not ev.data.get("replayed"):
                began = _number(ev.data.get("started") or ev.ts)
                tool_spans.setdefault(task, []).append((began, began + float(ev.duration_s)))
        self.tool_times.update({t: _covered(v) for t, v in tool_spans.items()})
        self.retry_counts.update(retries)
        self.token_usage.update(tokens)
        self.cost_usd.update(cost)
        for task, n in attempts.items():
            self.success_rates[task] = successes.get(task, 0) / n

    def _read_results(self) -> None:
        for task, output in self.results.items():
            meta = _meta(output)
            if "execution_time" in meta:
                self.execution_times[task] = _number(meta["execution_time"])
            if "retry_count" in meta:
                self.retry_counts[task] = int(_number(meta["retry_count"]))
            if "tokens_used" in meta:
                self.token_usage[task] = _tokens(meta["tokens_used"])
            if "cost_usd" in meta:
                self.cost_usd[task] = _number(meta["cost_usd"])
            self.statuses.setdefault(task, str(meta.get("status", "completed")))
            if task not in self.success_rates:
                failed = self.statuses[task] in _FAILED
                self.success_rates[task] = 0.0 if failed else 1.0 / (
                    1 + self.retry_counts.get(task, 0))
        finishes = [s.finish for spans in self._spans.values() for s in spans if s.finish]
        starts = [t for spans in self._spans.values() for s in spans
                  for t in (s.ready, s.start) if t is not None]
        if self._run_start is None and starts:
            self._run_start = min(starts)
        if finishes and self._run_start is not None:
            self.makespan = max(finishes) - self._run_start
        elif self._run_end is not None and self._run_start is not None:
            self.makespan = self._run_end - self._run_start
        else:
            self.makespan = self._longest_chain()[1]

    # -- analysis ------------------------------------------------------------------------

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` tasks that took longest, slowest first.

        Args:
            n: how many.

        Returns:
            ``(task, seconds)`` pairs.
        """
        ordered = sorted(self.execution_times.items(), key=lambda kv: kv[1], reverse=True)
        return ordered[:n]

    def critical_path(self) -> list[PathStep]:
        """The chain of tasks whose finish times determined the makespan, first to last.

        From the task that finished last, follow the upstream edge to the upstream task
        that finished last (the one the task was waiting for) until a task with no
        upstream that ran. Each step's ``seconds`` is that task's run time (first
        attempt's start to finish) and ``share`` its fraction of the makespan; what the
        shares leave over is scheduling and queueing on the path
        (``critical_path_overhead()``). Without timestamps, falls back to the longest
        chain by ``execution_time``.

        Returns:
            ``PathStep(task, seconds, share)`` from the first task to the last.

        Example:
            >>> ev = [Event(kind="task_started", task="a", ts=0.0),
            ...       Event(kind="task_finished", task="a", ts=1.0),
            ...       Event(kind="task_started", task="b", ts=1.0),
            ...       Event(kind="task_finished", task="b", ts=4.0)]
            >>> [s.task for s in RunMetrics(events=ev, edges={"b": ["a"]}).critical_path()]
            ['a', 'b']
        """
        spans = {task: s[-1] for task, s in self._spans.items()
                 if s and s[-1].finish is not None and s[-1].start is not None}
        if not spans:
            chain, _total = self._longest_chain()
            return [self._step(t, self.execution_times.get(t, 0.0)) for t in chain]
        current = max(spans, key=lambda t: spans[t].finish or 0.0)
        chain = [current]
        seen = {current}
        while True:
            ups = [u for u in self.edges.get(current, ()) if u in spans and u not in seen]
            if not ups:
                break
            current = max(ups, key=lambda t: spans[t].finish or 0.0)
            chain.append(current)
            seen.add(current)
        chain.reverse()
        return [self._step(t, (spans[t].finish or 0.0) - (spans[t].start or 0.0))
                for t in chain]

    def critical_path_tools(self) -> dict[str, float]:
        """Seconds of each critical-path task's run time spent in tool calls.

        Example:
            >>> ev = [Event(kind="task_started", task="a", ts=0.0),
            ...       Event(kind="tool_call", task="a", ts=1.5, duration_s=1.0,
            ...             data={"tool": "t", "started": 0.5}),
            ...       Event(kind="task_finished", task="a", ts=2.0)]
            >>> RunMetrics(ev).critical_path_tools()
            {'a': 1.0}
        """
        return {step.task: min(step.seconds, self.tool_times.get(step.task, 0.0))
                for step in self.critical_path()}

    def critical_path_overhead(self) -> float:
        """Seconds of the makespan on the critical path not spent running its tasks."""
        return max(0.0, self.makespan - sum(step.seconds for step in self.critical_path()))

    def queueing_by_role(self) -> dict[str, QueueStats]:
        """How long ready tasks waited for an agent, per agent role.

        Uses the ready→started timestamps (or ``queue_s`` in the events' data).

        Returns:
            ``{agent_role: QueueStats(n, mean, p95, max)}``.
        """
        waits: dict[str, list[float]] = {}
        for spans in self._spans.values():
            for span in spans:
                wait = span.queue_s
                if wait is None and span.ready is not None and span.start is not None:
                    wait = max(0.0, span.start - span.ready)
                if wait is not None:
                    waits.setdefault(span.role or "unknown", []).append(wait)
        return {role: QueueStats(len(v), sum(v) / len(v), _percentile(v, 0.95), max(v))
                for role, v in sorted(waits.items())}

    def summary(self, n: int = 10) -> str:
        """A text report: makespan, the slowest tasks, the critical path, queueing.

        Args:
            n: how many of the slowest tasks to list.

        Returns:
            Multi-line text for a terminal or a log.
        """
        lines = [f"makespan: {self.makespan:.2f} s, tasks: {len(self.statuses)}"]
        path = {step.task: step for step in self.critical_path()}
        lines += ["", f"{'task':<32} {'status':<10} {'time s':>8} {'tools s':>7} "
                      f"{'retries':>7} {'tokens':>8} {'cost $':>9} {'critical':>8}"]
        for task, seconds in self.slowest(n):
            step = path.get(task)
            lines.append(
                f"{task[:32]:<32} {self.statuses.get(task, '-'):<10} {seconds:>8.2f} "
                f"{self.tool_times.get(task, 0.0):>7.2f} {self.retry_counts.get(task, 0):>7} {self.token_usage.get(task, 0):>8} "
                f"{self.cost_usd.get(task, 0.0):>9.4f} "
                f"{f'{step.share:.0%}' if step else '':>8}")
        if path:
            tools = self.critical_path_tools()
            chain = " -> ".join(f"{s.task} ({s.seconds:.2f} s, {s.share:.0%}"
                                + (f", tools {tools[s.task]:.2f} s" if tools[s.task] else "")
                                + ")" for s in path.values())
            lines += ["", f"critical path: {chain}",
                      f"  scheduling/queueing on the path: {self.critical_path_overhead():.2f} s"]
        queues = self.queueing_by_role()
        if queues:
            lines += ["", f"{'agent role':<32} {'waits':>6} {'mean s':>8} {'p95 s':>8} "
                          f"{'max s':>8}"]
            for role, q in queues.items():
                lines.append(f"{role[:32]:<32} {q.n:>6} {q.mean:>8.2f} {q.p95:>8.2f} "
                             f"{q.max:>8.2f}")
        return "\n".join(lines)

    def suggestions(self, *, queue_threshold_s: float = 0.5) -> list[str]:
        """Plain-language hints drawn from the analysis.

        Args:
            queue_threshold_s: mean queueing above which a pool is called too small.

        Returns:
            One sentence per finding, most useful first.
        """
        hints: list[str] = []
        for role, q in sorted(self.queueing_by_role().items(), key=lambda kv: -kv[1].mean):
            if q.mean >= queue_threshold_s:
                hints.append(f"agent role {role}: mean queueing {q.mean:.1f} s "
                             f"(p95 {q.p95:.1f} s over {q.n} tasks); "
                             "add members to its pool")
        for step in self.critical_path():
            if step.share >= 0.5 and len(self.statuses) > 1:
                hints.append(f"task {step.task}: {step.share:.0%} of the makespan on the "
                             "critical path; speed it up (faster model, shorter prompt, "
                             "smaller context) or split it")
        tools = self.critical_path_tools()
        for step in self.critical_path():
            if step.seconds > 0 and tools[step.task] / step.seconds >= 0.5:
                hints.append(f"task {step.task}: {tools[step.task] / step.seconds:.0%} of its "
                             "time on the critical path is spent in tool calls; make those "
                             "tools faster, or let the model call them in parallel")
        for task, retries in sorted(self.retry_counts.items(), key=lambda kv: -kv[1]):
            if retries >= 2:
                hints.append(f"task {task}: {retries} retries; check its errors (rate limits "
                             "call for a rate limit or fewer pool members)")
        failed = sorted(t for t, s in self.statuses.items() if s in _FAILED)
        if failed:
            hints.append(f"failed tasks: {', '.join(failed)}; give them a fallback agent "
                         "or more retries")
        total_tokens = sum(self.token_usage.values())
        if total_tokens and len(self.token_usage) > 2:
            task, used = max(self.token_usage.items(), key=lambda kv: kv[1])
            if used / total_tokens >= 0.5:
                hints.append(f"task {task}: {used / total_tokens:.0%} of all tokens; "
                             "select less context for it")
        return hints

    def as_dict(self) -> dict[str, Any]:
        """The metrics as plain data (the guide's ``metrics`` keys plus the analysis)."""
        return {
            "execution_times": dict(self.execution_times),
            "success_rates": dict(self.success_rates),
            "retry_counts": dict(self.retry_counts),
            "token_usage": dict(self.token_usage),
            "cost_usd": dict(self.cost_usd),
            "tool_times": dict(self.tool_times),
            "makespan": self.makespan,
            "critical_path": [step._asdict() for step in self.critical_path()],
            "critical_path_tools": self.critical_path_tools(),
            "queueing_by_role": {r: q._asdict() for r, q in self.queueing_by_role().items()},
        }

    # -- helpers -------------------------------------------------------------------------

    def _step(self, task: str, seconds: float) -> PathStep:
        share = seconds / self.makespan if self.makespan > 0 else 0.0
        return PathStep(task, seconds, share)

    def _longest_chain(self) -> tuple[list[str], float]:
        """Longest chain by execution time through the edges (no timestamps needed)."""
        times = self.execution_times
        graph = {t: [u for u in self.edges.get(t, ()) if u in times] for t in times}
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError:
            order = list(times)
        best: dict[str, tuple[float, str | None]] = {}
        for task in order:
            if task not in times:
                continue
            prev = max(((best[u][0], u) for u in graph.get(task, ()) if u in best),
                       default=(0.0, None))
            best[task] = (prev[0] + times[task], prev[1])
        if not best:
            return [], 0.0
        last = max(best, key=lambda t: best[t][0])
        total = best[last][0]
        chain: list[str] = []
        node: str | None = last
        while node is not None:
            chain.append(node)
            node = best[node][1]
        return chain[::-1], total


class MetricsCollector:
    """Collect and analyze task metrics (the guide's class, as the guide uses it).

    Example:
        >>> from ray_orch.core.output import TaskOutput
        >>> collector = MetricsCollector()
        >>> collector.record_task("a", TaskOutput(metadata={"execution_time": 2.0}))
        >>> collector.record_task("b", TaskOutput(metadata={"execution_time": 5.0}))
        >>> collector.get_bottlenecks()
        [('b', 5.0), ('a', 2.0)]
    """

    def __init__(self) -> None:
        self.metrics: dict[str, dict[str, Any]] = {
            "execution_times": {},
            "success_rates": {},
            "retry_counts": {},
            "token_usage": {},
        }

    def record_task(self, task_id: str, output: Any) -> None:
        """Record task metrics.

        Args:
            task_id: the task's name.
            output: its ``TaskOutput`` (anything with a ``metadata`` dict).
        """
        meta = _meta(output)
        retries = int(_number(meta.get("retry_count", 0)))
        self.metrics["execution_times"][task_id] = _number(meta.get("execution_time", 0))
        self.metrics["retry_counts"][task_id] = retries
        self.metrics["token_usage"][task_id] = _tokens(meta.get("tokens_used", 0))
        # The guide declares success_rates without filling it: the share of this task's
        # attempts that succeeded (one success after ``retries`` failures).
        failed = str(meta.get("status", "completed")) in _FAILED
        self.metrics["success_rates"][task_id] = 0.0 if failed else 1.0 / (1 + retries)

    def record_all(self, results: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Record every ``(task_id, output)`` of a run's results.

        Args:
            results: ``dict[str, TaskOutput]`` as returned by ``Process.workflow()``.
        """
        items = results.items() if isinstance(results, Mapping) else results
        for task_id, output in items:
            self.record_task(task_id, output)

    def get_bottlenecks(self) -> list[tuple[str, float]]:
        """Identify performance bottlenecks: the top 5 slowest tasks, slowest first."""
        sorted_times = sorted(
            self.metrics["execution_times"].items(),
            key=lambda x: x[1],
            reverse=True,
        )
        return sorted_times[:5]
