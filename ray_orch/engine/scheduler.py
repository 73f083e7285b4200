"""The dependency-driven scheduler: plain Python, no Ray, no clock, no I/O.

A task is dispatched the moment its inputs are ready; nothing waits for a "step" to end.
The Supervisor feeds it completions and failures and gets back the next dispatches.

Task life: idle (not routed yet) -> waiting (activated, inputs pending) -> running ->
completed | failed | skipped. Start tasks are activated at once; tasks with incoming
control edges (``next_tasks``, decision routes) only when something routes to them. When
nothing runs and nothing is ready, tasks never routed to end ``skipped``, which may in
turn settle tasks waiting on them (skipped, or run with ``handle_missing_context``).

Resuming a run is the same walk with answers known in advance: outputs restored from a
checkpoint complete their task the moment it would have been dispatched.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from ray_orch.core.errors import (
    LoopDataError,
    LoopLimitError,
    RunError,
    StepLimitError,
    TaskFailedError,
)
from ray_orch.core.loops import as_inputs, fields_of, items_from_output
from ray_orch.core.output import TaskOutput
from ray_orch.core.prompt import placeholders
from ray_orch.engine.graph import Graph

__all__ = ["Dispatch", "Scheduler"]

State = Literal["idle", "waiting", "running", "completed", "failed", "skipped"]
OnFailure = Literal["fail", "continue"]


@dataclass(kw_only=True)
class Dispatch:
    """One unit of work to hand to an agent: a task visit, or one loop iteration."""

    task: str
    visit: int
    context: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    iteration: int | None = None
    of: int | None = None
    """For a loop iteration, how many items its loop has (the progress bar's total)."""

    @property
    def key(self) -> tuple[str, int, int | None]:
        return (self.task, self.visit, self.iteration)


@dataclass(kw_only=True)
class _Loop:
    total: int
    done: dict[int, TaskOutput] = field(default_factory=dict)
    failed: bool = False


class Scheduler:
    """Decides what runs next.

    Args:
        graph: the validated workflow.
        max_visits: how often a cycle may re-enter one task (a task's own
            ``max_visits`` wins).
        max_steps: dispatched task visits in the whole run.
        on_failure: ``"fail"`` stops the run at the first unhandled failure;
            ``"continue"`` marks its dependants skipped and goes on.
        restored: outputs known from a checkpoint, by (task, visit).
        restored_iterations: loop iterations known from a checkpoint, by (task, visit).

    Example:
        >>> from unittest.mock import Mock
        >>> from ray_orch import Task, TaskOutput
        >>> from ray_orch.engine.graph import build_graph
        >>> tasks = [Task(name="a", description="A", agent=Mock()),
        ...          Task(name="b", description="B", agent=Mock(), context=["a"])]
        >>> s = Scheduler(build_graph(tasks, "workflow", has_default_agent=False))
        >>> [d.task for d in s.start()]
        ['a']
        >>> [d.task for d in s.completed("a", TaskOutput(raw="done"))]
        ['b']
    """

    def __init__(self, graph: Graph, *, max_visits: int = 10, max_steps: int | None = None,
                 on_failure: OnFailure = "fail",
                 restored: dict[tuple[str, int], TaskOutput] | None = None,
                 restored_iterations: dict[tuple[str, int], dict[int, TaskOutput]] | None = None
                 ) -> None:
        self.graph = graph
        self.max_visits = max_visits
        self.max_steps = max_steps or max(1000, 10 * len(graph.nodes))
        self.on_failure = on_failure
        self.restored = dict(restored or {})
        self.restored_iterations = dict(restored_iterations or {})
        self.state: dict[str, State] = dict.fromkeys(graph.order, "idle")
        self.visits: dict[str, int] = dict.fromkeys(graph.order, 0)
        self.activator: dict[str, str | None] = dict.fromkeys(graph.order)
        self.outputs: dict[str, TaskOutput] = {}
        self.errors: dict[str, BaseException] = {}
        self.skip_reasons: dict[str, str] = {}
        self.loops: dict[str, _Loop] = {}
        self.running = 0
        self.steps = 0
        self.abort: RunError | LoopDataError | None = None
        self.resumed: list[str] = []
        self.dependants: dict[str, list[str]] = defaultdict(list)
        for name, node in graph.nodes.items():
            for upstream in dict.fromkeys(node.deps + node.after):
                self.dependants[upstream].append(name)
        self._out: list[Dispatch] = []
        self._check: deque[str] = deque()   # tasks whose readiness may have changed
        self._checking = False
        self._reaches: dict[str, set[str]] = {}

    # -- inputs from the supervisor ----------------------------------------------------

    def start(self) -> list[Dispatch]:
        """Activate the start tasks; return the first dispatches."""
        for name in self.graph.starts():
            self._activate(name, by=None)
        return self._drain()

    def completed(self, name: str, output: TaskOutput) -> list[Dispatch]:
        """A task visit finished with ``output``; return what can run now."""
        self.running -= 1
        self._complete(name, output)
        return self._drain()

    def iteration_completed(self, name: str, index: int, output: TaskOutput,
                            visit: int | None = None) -> list[Dispatch]:
        """One loop iteration finished; the loop completes with its last iteration."""
        self.running -= 1
        if visit is None or visit == self.visits[name]:  # else: a straggler of an old visit
            self._iteration_done(name, index, output)
        return self._drain()

    def failed(self, name: str, error: BaseException, visit: int | None = None) -> list[Dispatch]:
        """A task visit (or one of its loop iterations) failed for good."""
        self.running -= 1
        if visit is not None and visit != self.visits[name]:
            return self._drain()  # a straggler of an earlier visit
        loop = self.loops.get(name)
        if loop is not None:
            if loop.failed:
                return self._drain()
            loop.failed = True
        self._fail(name, error)
        return self._drain()

    def follower(self, name: str, after: str) -> Dispatch | None:
        """The dispatch ``name`` will get the moment ``after`` (running now) completes,
        if that is certain now; else None. The Supervisor uses it to start ``name`` in
        the member that runs ``after`` without a round trip (a hand-off), and checks the
        real dispatch against it when ``after`` completes.

        Certain means: ``name`` is activated and waits on nothing but ``after``, it is a
        plain task (no loop, no run-on-failure), ``after`` is a running plain task (no
        loop, no decision), and the step limit leaves room.
        """
        if self.abort is not None or self.state.get(name) != "waiting" or \
                self.state.get(after) != "running" or after in self.loops:
            return None
        node = self.graph.nodes[name]
        upstream = node.deps + node.after
        if after not in upstream or any(self.state[u] != "completed"
                                         for u in upstream if u != after):
            return None
        task, previous = node.task, self.graph.nodes[after].task
        if task.task_type == "loop" or task.condition_on_previous_failure or \
                previous.task_type in ("loop", "decision"):
            return None
        if self.steps + 1 > self.max_steps or (name, self.visits[name]) in self.restored:
            return None
        if node.explicit_context or self.graph.mode != "workflow":
            context = [d for d in node.deps if d == after or self.state[d] == "completed"]
        else:
            by = self.activator[name]
            context = [by] if by and (by == after or self.state.get(by) == "completed") else []
        return Dispatch(task=name, visit=self.visits[name], context=context)

    @property
    def finished(self) -> bool:
        """Nothing runs and nothing more can start."""
        return self.running == 0 and (self.abort is not None or not self._out)

    def statuses(self) -> dict[str, str]:
        """Each task's status as users see it."""
        shown = {"idle": "skipped", "waiting": "pending"}
        return {name: shown.get(state, state) for name, state in self.state.items()}

    # -- internals ---------------------------------------------------------------------

    def _drain(self) -> list[Dispatch]:
        if self.abort is not None:
            self._out.clear()
            return []
        if self.running == 0 and not self._out:
            self._settle()
        out, self._out = self._out, []
        self.running += len(out)
        return out

    def _settle(self) -> None:
        # Quiescent: tasks never routed to will never run; that may settle their waiters.
        while self.running == 0 and not self._out and self.abort is None:
            idle = [n for n in self.graph.order if self.state[n] == "idle"]
            if not idle:
                return
            for name in idle:
                self._skip(name, "not routed to")

    def _activate(self, name: str, by: str | None, *, rerun: bool = False) -> None:
        state = self.state[name]
        if state in ("waiting", "running"):
            return
        if state == "completed" and by is not None and not rerun and \
                by not in self.reaches(name):
            return  # a second branch joining through next_tasks, not a cycle: run once
        limit = self.graph.nodes[name].task.max_visits or self.max_visits
        if self.visits[name] >= limit:
            self._abort(StepLimitError(
                f"task '{name}' was entered {self.visits[name]} times, its visit limit "
                f"(max_visits={limit}); the cycle through it did not end", task=name))
            return
        self.visits[name] += 1
        self.activator[name] = by
        self.state[name] = "waiting"
        self.loops.pop(name, None)
        self._check.append(name)
        self._pump()

    def _try_ready(self, name: str) -> None:
        if self.state[name] != "waiting" or self.abort is not None:
            return
        node = self.graph.nodes[name]
        settled = ("completed", "failed", "skipped")
        upstream = node.deps + node.after
        if any(self.state[u] not in settled for u in upstream):
            return
        task = node.task
        if task.condition_on_previous_failure and node.previous and \
                self.state[node.previous] != "failed":
            self._skip(name, f"'{node.previous}' did not fail")
            return
        missing: dict[str, str] = {d: self.state[d] for d in node.deps
                                   if self.state[d] != "completed"}
        if node.either and any(self.state[d] == "completed" for d in node.either):
            missing = {d: s for d, s in missing.items() if d not in node.either}
        if missing and not task.handle_missing_context:
            listed = ", ".join(f"{d} {s}" for d, s in missing.items())
            self._skip(name, f"context not available ({listed})")
            return
        if node.explicit_context or self.graph.mode != "workflow":
            context = [d for d in node.deps if self.state[d] == "completed"]
        else:
            by = self.activator[name]
            context = [by] if by and self.state.get(by) == "completed" else []
        self.steps += 1
        if self.steps > self.max_steps:
            self._abort(StepLimitError(f"the run dispatched more than max_steps={self.max_steps}"
                                       f" task visits (at '{name}')", task=name))
            return
        self.state[name] = "running"
        visit = self.visits[name]
        restored = self.restored.pop((name, visit), None)
        if restored is not None:
            self.resumed.append(name)
            self._complete(name, restored)
            return
        base = Dispatch(task=name, visit=visit, context=context, missing=missing)
        if task.task_type == "loop":
            self._start_loop(node.name, base)
        else:
            self._out.append(base)

    def _start_loop(self, name: str, base: Dispatch) -> None:
        node = self.graph.nodes[name]
        try:
            if node.loop_items is not None:
                items = node.loop_items
            else:
                source = next(d for d in node.deps if d in self.outputs)
                items = items_from_output(self.outputs[source], task=name)
        except (LoopDataError, StopIteration) as exc:
            self._fail(name, exc if isinstance(exc, LoopDataError) else LoopDataError(
                f"task '{name}': no context output to loop over", task=name, field="loop_data"))
            return
        unfilled = placeholders(node.task.description) - fields_of(items)
        if unfilled:
            self._fail(name, LoopDataError(
                f"task '{name}': description placeholders {sorted(unfilled)} cannot be filled "
                f"from the items of its loop (fields: {sorted(fields_of(items))})", task=name,
                field="description"))
            return
        limit = node.task.max_iterations
        if limit is not None and len(items) > limit:
            self._fail(name, LoopLimitError(
                f"loop '{name}' has {len(items)} items, more than max_iterations={limit}",
                task=name))
            return
        loop = self.loops[name] = _Loop(total=len(items))
        loop.done.update(self.restored_iterations.pop((name, base.visit), {}))
        for index, item in enumerate(items):
            if index in loop.done:
                continue
            self._out.append(Dispatch(task=name, visit=base.visit, context=base.context,
                                      missing=base.missing, inputs=as_inputs(item, index),
                                      iteration=index, of=len(items)))
        if len(loop.done) == loop.total:
            self._finish_loop(name)

    def _iteration_done(self, name: str, index: int, output: TaskOutput) -> None:
        loop = self.loops.get(name)
        if loop is None or loop.failed or len(loop.done) == loop.total:
            return
        loop.done[index] = output
        if len(loop.done) == loop.total:
            self._finish_loop(name)

    def _finish_loop(self, name: str) -> None:
        loop = self.loops[name]
        ordered = [loop.done[i] for i in range(loop.total)]
        meta: dict[str, Any] = {"iterations": loop.total}
        for key in ("execution_time", "tokens_used", "cost_usd", "retry_count"):
            meta[key] = sum(o.metadata.get(key, 0) or 0 for o in ordered)
        meta["model"] = next((o.metadata.get("model") for o in ordered
                              if o.metadata.get("model")), None)
        tool_calls = [c for o in ordered for c in o.metadata.get("tool_calls", [])]
        if tool_calls:  # every call of every iteration, as a task's own output lists them
            meta["tool_calls"] = tool_calls
        output = TaskOutput(raw="\n".join(o.raw for o in ordered), task_id=name,
                            agent=ordered[0].agent if ordered else None,
                            iterations=ordered, metadata=meta)
        self._complete(name, output)

    def _complete(self, name: str, output: TaskOutput) -> None:
        node = self.graph.nodes[name]
        self.state[name] = "completed"
        self.outputs[name] = output
        if self.graph.mode == "workflow":
            targets = list(node.next)
            route = output.metadata.get("decision")
            if node.routes and route is not None:
                targets += node.routes.get(route, [])
            for target in dict.fromkeys(targets):
                self._activate(target, by=name)
            if self.visits[name] > 1:
                self._rerun_dependants(name)
        self._wake(name)

    def _rerun_dependants(self, name: str) -> None:
        # A task entered again (a decision routed back to it: draft <- review) has a new
        # output: whatever read the old one through context runs again, in order.
        for dependant in self.dependants.get(name, []):
            if self.state[dependant] in ("completed", "failed") and \
                    name in self.graph.nodes[dependant].deps:
                self._activate(dependant, by=name, rerun=True)

    def _fail(self, name: str, error: BaseException) -> None:
        self.state[name] = "failed"
        self.errors[name] = error
        handled = any(n.task.condition_on_previous_failure and n.previous == name
                      for n in self.graph.nodes.values())
        if not handled and self.on_failure == "fail":
            if isinstance(error, (RunError, LoopDataError)):
                self._abort(error)
            else:
                self._abort(TaskFailedError(f"task '{name}' failed: {type(error).__name__}: "
                                            f"{error}", task=name, original=error))
            return
        self._wake(name)

    def _skip(self, name: str, reason: str) -> None:
        self.state[name] = "skipped"
        self.skip_reasons[name] = reason
        self._wake(name)

    def _wake(self, name: str) -> None:
        self._check.extend(self.dependants.get(name, []))
        self._pump()

    def _pump(self) -> None:
        # Iterative, not recursive: a skip cascade or a resume through a long chain would
        # otherwise nest 3-4 frames a task and hit RecursionError at ~300 tasks.
        if self._checking:
            return
        self._checking = True
        try:
            while self._check:
                self._try_ready(self._check.popleft())
        finally:
            self._checking = False

    def reaches(self, name: str) -> set[str]:
        """Tasks reachable from ``name`` through next_tasks / routes and the context of
        its readers (computed on demand): re-entering a completed task is a cycle only if
        the task routing to it is downstream of it."""
        if name not in self._reaches:
            seen: set[str] = set()
            todo = [name]
            while todo:
                current = todo.pop()
                node = self.graph.nodes[current]
                readers = [d for d in self.dependants.get(current, [])
                           if current in self.graph.nodes[d].deps]
                for target in node.next + [t for ts in node.routes.values() for t in ts] + \
                        readers:
                    if target not in seen:
                        seen.add(target)
                        todo.append(target)
            self._reaches[name] = seen
        return self._reaches[name]

    def _abort(self, error: RunError | LoopDataError) -> None:
        if self.abort is None:
            self.abort = error
