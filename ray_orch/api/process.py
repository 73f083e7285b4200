"""``Process``: runs a set of tasks sequentially, as a workflow, or under a manager, on Ray.

The driver validates the whole workflow before any LLM call, connects to (or starts)
Ray, starts one Supervisor actor for the run and follows its event stream; the final
``dict[str, TaskOutput]`` comes back and each driver-side Task gets its ``status`` and
``result``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

from ray_orch.api.driver_errors import as_run_error, reap_lost_supervisor
from ray_orch.api.run_checks import check_api_keys, check_hierarchical, check_run
from ray_orch.api.supervisors import keep_supervisor, new_run_id, pack, take_supervisor
from ray_orch.core import trace
from ray_orch.core.errors import (
    InvalidTaskFieldError,
    RayOrchError,
    RunCancelledError,
    RunError,
)
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.core.stream import StreamEvent
from ray_orch.core.sync import run_sync
from ray_orch.engine.graph import Graph, Mode, build_graph, name_tasks
from ray_orch.engine.run import RunResult, RunSpec
from ray_orch.model.resolve import has_default_model
from ray_orch.observe.tracing import configure as configure_tracing
from ray_orch.observe.tracing import flush as flush_tracing
from ray_orch.observe.tracing import settings_from
from ray_orch.policy.agent import Agent
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.jobs import DetachedRun
    from ray_orch.observe.analysis import RunMetrics

__all__ = ["Process"]

_announced = False  # the metrics endpoint is printed once per driver process

class Process:
    """A set of tasks and the agents that do them.

    Args:
        tasks: ``{"name": Task, ...}`` (the guide's form) or a list of Tasks.
        agents: the agents (in hierarchical mode: the ones the manager assigns).
        manager_llm: the manager's model for ``hierarchical()`` (a litellm model string
            or a dict of litellm options); default: ``RAY_ORCH_MODEL`` / embedded model.
        name: the workflow's name in metrics and checkpoints.
        on_failure: ``"fail"`` (stop the run at the first unhandled failure) or
            ``"continue"`` (mark its dependants skipped and go on).
        max_visits: how often a cycle may re-enter one task.
        max_steps: task visits in the whole run (default: max(1000, 10 x tasks)).
        max_manager_calls: hierarchical mode: manager model calls in the whole run
            (default: max(10, 4 x tasks)); past it, the deterministic fallback assigns.
        checkpoint_dir: where completed results are persisted (resume with ``resume=``).
        cache: cache every task's result (``Task(cache_ttl=...)`` per task).
        budget_tokens / budget_usd: stop dispatching once the run has used this much.
        progress: live progress on a terminal (default: on when stdout is a TTY).
        runtime_env / ray_init: passed to ``ray.init`` when the process starts Ray.

    Every argument is checked here, before Ray starts: an unknown keyword is an
    ``UnknownKeywordError``; a wrong type, range or an empty ``tasks`` an
    ``InvalidTaskFieldError`` naming the field.

    Example:
        >>> from ray_orch import Agent, Task
        >>> from ray_orch.testing import StubLLMServer
        >>> with StubLLMServer(reply="42 rows") as model:
        ...     extractor = Agent(role="Data Extractor", goal="Extract", llm=model.llm)
        ...     loader = Agent(role="Data Loader", goal="Load", llm=model.llm)
        ...     tasks = {"extract": Task(description="Extract the rows", agent=extractor),
        ...              "load": Task(description="Load them", agent=loader,
        ...                           context=["extract"])}
        ...     process = Process(tasks=tasks, agents=[extractor, loader])
        ...     results = process.sequential()
        >>> results["load"].raw
        '42 rows'
    """

    def __init__(self, tasks: dict[str, Task] | Iterable[Task] | None = None,
                 agents: list[Any] | None = None, manager_llm: Any = None, *positional: Any,
                 name: str = "workflow", on_failure: str = "fail",
                 max_visits: int = 10, max_steps: int | None = None,
                 checkpoint_dir: str | os.PathLike[str] | None = None, cache: bool = False,
                 budget_tokens: int | None = None, budget_usd: float | None = None,
                 progress: bool | None = None, verbose: bool = False,
                 runtime_env: dict[str, Any] | None = None,
                 ray_init: dict[str, Any] | None = None, metrics: bool = True,
                 metrics_host: str | None = None, metrics_port: int | None = None,
                 max_manager_calls: int | None = None,
                 approval_handler: Callable[..., Any] | None = None, **unknown: Any) -> None:
        from ray_orch.policy.fields import (
            PROCESS_KEYWORDS,
            accept_keywords,
            check_process,
            no_positional,
        )

        no_positional("Process", positional, first="tasks")
        unknown = accept_keywords("Process", unknown, known=_known_keywords())
        check_process(dict(locals()))
        for key in PROCESS_KEYWORDS:  # read by other features; None if not given
            setattr(self, key, unknown.get(key))
        assert tasks is not None  # check_process refused None
        self.tasks = tasks
        self.task_list = name_tasks(tasks)
        peers = {t.id: t for t in self.task_list if isinstance(t, Task)}
        for task in peers.values():
            task._peers = peers
        self.agents = list(agents or [])
        self.manager_llm = manager_llm
        self.name = name
        self.on_failure = on_failure
        self.max_visits = max_visits
        self.max_steps = max_steps
        self.checkpoint_dir = os.fspath(checkpoint_dir) if checkpoint_dir else None
        self.cache = cache
        self.budget_tokens = budget_tokens
        self.budget_usd = budget_usd
        self.progress = progress
        self.verbose = verbose
        self.runtime_env = runtime_env
        self.ray_init = dict(ray_init or {})
        self.metrics_enabled = metrics
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.max_manager_calls = max_manager_calls
        if approval_handler is not None and not callable(approval_handler):
            raise InvalidTaskFieldError(f"Process: approval_handler must be a callable, not "
                                        f"{type(approval_handler).__name__}",
                                        field="approval_handler")
        self.approval_handler = approval_handler
        self.events: list[Event] = []
        self.last_result: RunResult | None = None
        self._supervisor: Any = None
        self._graph: Graph | None = None
        self._by_name: dict[str, Task] = {}

    # -- public runs -------------------------------------------------------------------

    def sequential(self, **kwargs: Any) -> dict[str, TaskOutput]:
        """Run the tasks one after another (``async_execution`` tasks beside their neighbours).

        Returns:
            Every completed task's output by name.

        Raises:
            WorkflowDefinitionError: the workflow is invalid (before any LLM call).
            RunError: the run failed; ``.results`` holds what completed.
        """
        return self._sync("sequential", **kwargs)

    async def asequential(self, **kwargs: Any) -> dict[str, TaskOutput]:
        """Async form of ``sequential()``."""
        return await self._arun("sequential", **kwargs)

    @overload
    def workflow(self, *, detach: Literal[False] = False, **kwargs: Any
                 ) -> dict[str, TaskOutput]: ...

    @overload
    def workflow(self, *, detach: Literal[True], **kwargs: Any) -> DetachedRun: ...

    def workflow(self, *, detach: bool = False, **kwargs: Any
                 ) -> dict[str, TaskOutput] | DetachedRun:
        """Run the tasks as a graph: dependencies, decisions, loops, parallel branches.

        Args:
            resume: a run id (or ``True`` for the latest run) to resume from checkpoints.
            detach: submit the run to the cluster as a job of its own and return at once
                (``ray_orch.api.jobs.DetachedRun``): it continues after this driver exits.

        Returns:
            Every completed task's output by name; tasks never reached are ``skipped``.
        """
        if detach:
            from ray_orch.api.jobs import detach as submit_detached

            return submit_detached(self, "workflow", **kwargs)
        return self._sync("workflow", **kwargs)

    async def aworkflow(self, **kwargs: Any) -> dict[str, TaskOutput]:
        """Async form of ``workflow()``; works from a running event loop."""
        return await self._arun("workflow", **kwargs)

    def hierarchical(self, **kwargs: Any) -> dict[str, TaskOutput]:
        """Let a manager model assign ready tasks to agents (several at once)."""
        return self._sync("hierarchical", **kwargs)

    async def ahierarchical(self, **kwargs: Any) -> dict[str, TaskOutput]:
        """Async form of ``hierarchical()``."""
        return await self._arun("hierarchical", **kwargs)

    def stream(self, mode: Mode = "workflow", *, tokens: bool = False,
               **kwargs: Any) -> Iterator[StreamEvent]:
        """Run the process and yield its events as they happen (``StreamEvent``).

        Args:
            mode: ``"workflow"``, ``"sequential"`` or ``"hierarchical"``.
            tokens: stream every model answer: ``token`` events carry its pieces.
            **kwargs: what ``workflow()`` takes (``resume=``, ...).

        Yields:
            ``run_started`` ... ``run_completed`` (``.results``, as ``workflow()`` returns)
            or ``run_failed`` (``.error``); see ``ray_orch.core.stream`` for every kind.
            Breaking out of the loop cancels the run (completed results are kept).

        Raises:
            WorkflowDefinitionError: the workflow is invalid (before anything runs).

        Example:
            >>> from ray_orch import Agent, Task
            >>> from ray_orch.testing import StubLLMServer
            >>> with StubLLMServer(reply="done") as model:
            ...     agent = Agent(role="Worker", goal="Work", llm=model.llm)
            ...     process = Process(tasks={"a": Task(description="A", agent=agent)})
            ...     kinds = [ev.kind for ev in process.stream(tokens=True)]
            >>> kinds
            ['run_started', 'task_started', 'token', 'task_completed', 'run_completed']
        """
        from ray_orch.api.streaming import stream

        return stream(self, mode, tokens=tokens, **kwargs)

    def astream(self, mode: Mode = "workflow", *, tokens: bool = False,
                **kwargs: Any) -> AsyncIterator[StreamEvent]:
        """Async form of ``stream()``: ``async for ev in process.astream(): ...``."""
        from ray_orch.api.streaming import astream

        return astream(self, mode, tokens=tokens, **kwargs)

    def cancel(self) -> None:
        """Cancel the running run: in-flight work is cancelled, completed results kept."""
        if self._supervisor is not None:
            import ray

            ray.get(self._supervisor.cancel.remote())

    def validate(self, mode: Mode = "workflow") -> Graph:
        """Check the workflow statically (no Ray, no LLM call).

        Raises:
            WorkflowDefinitionError: listing every problem found.
        """
        default = self._default_agent(mode)
        if mode == "hierarchical":
            check_hierarchical(self)
        graph = build_graph(self.task_list, mode, has_default_agent=default is not None,
                            needs_agents=mode != "hierarchical")
        for agent in self.agents + [t.agent for t in self.task_list] + \
                [t.fallback_agent for t in self.task_list]:
            if isinstance(agent, Agent):
                _ = agent.llm_config  # ModelNotConfiguredError here, not on the cluster
        self._graph = graph
        return graph

    def _check_run(self, mode: Mode, **kwargs: Any) -> None:
        """The run's own arguments (``resume=``, ...), checked before Ray starts; the CLI's
        ``validate`` checks them too."""
        check_run(self, mode, kwargs)

    # -- internals ---------------------------------------------------------------------

    def _default_agent(self, mode: Mode) -> Agent | None:
        # Only tasks without an agent need one (and looking for a model costs ~0.6 ms).
        if mode == "hierarchical" or all(t.agent is not None for t in self.task_list) or \
                not has_default_model():
            return None
        return Agent(role="Assistant", goal="Complete the task accurately and concisely")

    def _sync(self, mode: Mode, **kwargs: Any) -> dict[str, TaskOutput]:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            try:
                return run_sync(self._arun(mode, **kwargs))  # type: ignore[no-any-return]
            except KeyboardInterrupt:
                self.cancel()
                raise
            finally:
                signal.signal(signal.SIGINT, previous)
        return run_sync(self._arun(mode, **kwargs))  # type: ignore[no-any-return]

    async def _arun(self, mode: Mode, *, live: Callable[[Event], None] | None = None,
                    tokens: bool = False, **kwargs: Any) -> dict[str, TaskOutput]:
        self._check_run(mode, **kwargs)
        # Traced when the driver's environment names an OTLP endpoint: the run's spans
        # (Supervisor, members, tools) hang under this one.
        telemetry = settings_from(os.environ)
        if not configure_tracing(telemetry):
            return await self._execute(mode, live=live, tokens=tokens, telemetry={}, **kwargs)
        with trace.span(f"invoke_workflow {self.name}",
                        {"gen_ai.operation.name": "invoke_workflow",
                         "gen_ai.workflow.name": self.name, "ray_orch.mode": mode,
                         "openinference.span.kind": "CHAIN"}):
            try:
                return await self._execute(mode, live=live, tokens=tokens,
                                           telemetry=telemetry, **kwargs)
            finally:
                await asyncio.to_thread(flush_tracing)

    async def _execute(self, mode: Mode, *, live: Callable[[Event], None] | None,
                       tokens: bool, telemetry: dict[str, str],
                       resume: str | bool | None = None, allow_drift: bool = False,
                       run_id: str | None = None, answers: Any = None
                       ) -> dict[str, TaskOutput]:
        if isinstance(resume, str):
            run_id = resume
        elif resume:
            run_id = "latest"
        graph = self.validate(mode)
        from ray_orch.api.approvals import Asker, approval_mode, check_answers

        approvals = approval_mode(self)
        answers = check_answers(self, run_id, answers)
        asker = Asker(self.approval_handler) if approvals == "inline" else None
        spec = self._spec(mode, run_id=run_id, resume=bool(resume), allow_drift=allow_drift,
                          live=live, tokens=tokens, telemetry=telemetry,
                          approvals=approvals, answers=answers)
        agents = spec.agents + [a for a in (spec.default_agent,) if a is not None]
        packed = pack(spec)
        check_api_keys(self)
        from ray_orch.api.runtime import ensure_ray

        try:
            fresh = ensure_ray(runtime_env=self.runtime_env, **self.ray_init)
        except Exception as exc:
            raise RunError(f"run {spec.run_id}: Ray could not be started or reached "
                           f"({type(exc).__name__}: {exc}); check RAY_ADDRESS and "
                           "Process(ray_init=...)", run_id=spec.run_id) from exc
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        from ray_orch.api import heal

        if heal.prepare(spec):  # a standing runtime journals every run
            packed = pack(spec)
        from actors.registry import get_registry

        registry = get_registry()
        if fresh:  # a new private Ray: the run's processes start side by side
            from ray_orch.api.warm import start_in_parallel

            start_in_parallel(registry, agents + [t.agent for t in self.task_list
                                                  if t.agent is not None],
                              metrics=self.metrics_enabled, metrics_host=self.metrics_host,
                              metrics_port=self.metrics_port)
        kept = take_supervisor(registry)
        self._supervisor = kept or await registry.lease_supervisor.remote()
        self.events = []
        self._by_name = {t.id: t for t in self.task_list}  # once a run, not once an event
        from ray_orch.api.callbacks import Deliveries

        self._deliveries = Deliveries(self._by_name, view=self._output_view())
        for task in self.task_list:
            task.status = "pending"
            task.result = None
        alive = True
        try:
            try:  # a lost Supervisor is replaced, resuming from the journal
                result = await heal.follow(self, spec, packed, registry, pack=pack,
                                           live=live, asker=asker)
            except (ActorDiedError, ActorUnavailableError):
                if kept is None or self.events:
                    raise
                # The kept Supervisor died while idle (its node went away): nothing ran.
                await reap_lost_supervisor(registry, self._supervisor)
                self._supervisor = await registry.lease_supervisor.remote()
                result = await self._follow(spec, packed, live, asker)
        except asyncio.CancelledError:
            await self._supervisor.cancel.remote()  # returns once the run has wound down
            raise
        except (ActorDiedError, ActorUnavailableError) as exc:
            alive = False  # a dead Supervisor is not kept; what it held is stopped
            await reap_lost_supervisor(registry, self._supervisor)
            done = [e.task for e in self.events
                    if e.kind == "task_finished" and e.status == "completed" and e.task]
            raise as_run_error(exc, run_id=spec.run_id, checkpoint_dir=self.checkpoint_dir,
                               lost=True, completed=list(dict.fromkeys(done))) from exc
        except Exception as exc:
            typed = as_run_error(exc, run_id=spec.run_id, checkpoint_dir=self.checkpoint_dir,
                                 lost=False)
            if typed is exc:
                raise
            raise typed from exc
        finally:
            if alive:  # idle again, whether its run ended well or not
                keep_supervisor(registry, self._supervisor)
            await self._deliveries.drain()  # async callbacks end before the run returns
            if asker is not None:
                await asyncio.gather(*asker.jobs, return_exceptions=True)
        if asker is not None:
            asker.raise_failure()
        self.last_result = result
        self._apply(result, graph)
        self._deliveries.finish(result.outputs)
        if result.error is not None:
            _raise_for(result, spec)
        return result.outputs

    def _spec(self, mode: Mode, *, run_id: str | None, resume: bool, allow_drift: bool,
              live: Any, tokens: bool, telemetry: dict[str, str], approvals: str | None,
              answers: dict[str, Any]) -> RunSpec:
        """The run as its Supervisor gets it; models are resolved here, where the
        driver's environment (``RAY_ORCH_MODEL``, keys) is set."""
        default_agent = self._default_agent(mode)
        agents = self.agents + [a for a in (default_agent,) if a is not None]
        for agent in agents + [t.agent for t in self.task_list] + \
                [t.fallback_agent for t in self.task_list]:
            if isinstance(agent, Agent):
                _ = agent.llm_config  # resolve on the driver, where the env is set
        manager = self.manager_llm
        if mode == "hierarchical":
            from ray_orch.model.resolve import resolve_llm

            # Here, where RAY_ORCH_MODEL is set, like every agent's model: the
            # Supervisor's environment is the cluster's, not this driver's.
            manager = resolve_llm(self.manager_llm, who="the hierarchical manager (manager_llm)")
        return RunSpec(run_id=run_id or new_run_id(), workflow=self.name, mode=mode,
                       tasks=self.task_list, agents=self.agents, default_agent=default_agent,
                       manager=manager, max_visits=self.max_visits,
                       max_steps=self.max_steps, on_failure=self.on_failure,
                       max_manager_calls=self.max_manager_calls,
                       checkpoint_dir=self.checkpoint_dir, resume=resume,
                       allow_drift=allow_drift, cache=self.cache,
                       budget_tokens=self.budget_tokens, budget_usd=self.budget_usd,
                       metrics=self.metrics_enabled, metrics_host=self.metrics_host,
                       metrics_port=self.metrics_port, stream=live is not None,
                       tokens=tokens, telemetry=telemetry, trace_context=trace.carrier(),
                       approvals=approvals, answers=answers)

    async def _follow(self, spec: RunSpec, packed: bytes,
                      live: Callable[[Event], None] | None = None,
                      asker: Any = None) -> RunResult:
        from ray.exceptions import RayTaskError

        from ray_orch.observe.progress import Progress

        stream = self._supervisor.run.options(num_returns="streaming").remote(packed)
        result: RunResult | None = None
        units, pending = self._graph.work_units() if self._graph is not None else (None, [])
        with Progress(total=units or len(self.task_list), pending=pending,
                      enabled=self.progress, verbose=self.verbose,
                      description=self.name) as progress:
            async for ref in stream:
                try:
                    kind, payload = await ref
                except RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, RayOrchError) else None
                    if cause is None:
                        raise
                    raise cause from None
                if kind == "result":
                    result, payload = payload
                for raw in payload:
                    event = Event.model_validate(raw)
                    if live is not None:
                        live(event)
                    if event.kind == "task_completed":
                        self._deliveries.on_event(event)  # callbacks, output files
                        continue
                    if event.kind in ("token", "tool_progress"):
                        continue  # the stream's alone: not kept with the run's events
                    if event.kind == "approval_requested" and asker is not None:
                        asker.on_event(event.data, self._supervisor)
                    self.events.append(event)
                    self._on_event(event)
                    progress(event)
                if result is not None:
                    break  # the last item: no need to wait for the stream's end too
        if result is None:
            raise RunCancelledError(f"run {spec.run_id} ended without a result")
        return result

    def _output_view(self) -> Any:
        """What changes an output before its callback sees it (None: nothing)."""
        return None

    def _on_event(self, event: Event) -> None:
        global _announced
        if event.kind == "run_started" and event.data.get("metrics_url") and not _announced:
            _announced = True
            print(f"[ray-orch] metrics: {event.data['metrics_url']}", file=sys.stderr)
        task = self._by_name.get(event.task or "")
        if task is None:
            return
        if event.kind == "task_ready" and task.status == "pending":
            task.status = "running"

    def _apply(self, result: RunResult, graph: Graph) -> None:
        for task in self.task_list:
            status = result.statuses.get(task.id, "skipped")
            task.status = status  # type: ignore[assignment]
            task.result = result.outputs.get(task.id)

    def graph(self, format: Literal["mermaid", "png"] = "mermaid",
              path: str | os.PathLike[str] | None = None) -> str | Path:
        """The workflow as Mermaid text, or a PNG's path (after a run: statuses, times,
        the path taken).

        Example:
            >>> from ray_orch import Task
            >>> from unittest.mock import Mock
            >>> process = Process(tasks={"a": Task(description="A", agent=Mock())})
            >>> print(process.graph().splitlines()[0])
            flowchart LR
        """
        from ray_orch.observe.visualize import process_graph

        return process_graph(self, format, Path(path) if path is not None else None)

    @property
    def metrics(self) -> RunMetrics:
        """Bottleneck analysis of the last run: per-task times, success rates, retries,
        tokens, the slowest tasks, the critical path and queueing per agent role.

        Example:
            >>> from ray_orch import Agent, Task
            >>> from ray_orch.testing import StubLLMServer
            >>> with StubLLMServer(reply="ok") as model:
            ...     agent = Agent(role="Worker", goal="Work", llm=model.llm)
            ...     process = Process(tasks={"a": Task(description="A", agent=agent)})
            ...     _ = process.workflow()
            >>> process.metrics.statuses["a"]
            'completed'
        """
        from ray_orch.observe.analysis import RunMetrics

        edges = self._graph.upstream() if self._graph else {}
        if self.last_result is not None:
            # A routed task waited for the task that routed to it: that is an edge of the
            # critical path too.
            for name, by in self.last_result.activated_by.items():
                if by and by not in edges.get(name, []):
                    edges.setdefault(name, []).append(by)
        return RunMetrics(self.events, self.results, edges)

    @property
    def metrics_url(self) -> str | None:
        """The Prometheus scrape endpoint of the MetricsHub (after a run)."""
        return self.last_result.metrics_url if self.last_result else None

    @property
    def results(self) -> dict[str, TaskOutput]:
        """The outputs of the last run."""
        return dict(self.last_result.outputs) if self.last_result else {}


def _raise_for(result: RunResult, spec: RunSpec) -> NoReturn:
    """Raise a run's error as the driver's caller sees it: typed, with the run id and
    what completed, the user's own exception chained."""
    error = result.error
    if isinstance(error, RunError):
        error.results = dict(result.outputs)
        error.run_id = error.run_id or spec.run_id
        original = getattr(error, "original", None)
        if isinstance(original, BaseException):
            raise error from original  # the user's own exception stays reachable
        raise error
    if isinstance(error, RayOrchError):
        raise error  # a mistake only the run could find (loop items it produced)
    raise RunError(str(error), results=dict(result.outputs), run_id=spec.run_id) from error


def _known_keywords() -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(Process.__init__).parameters) - {
        "self", "positional", "unknown"}
