"""``Process``: runs a set of tasks sequentially, as a workflow, or under a manager, on Ray.

A ``Process`` builds and validates: the whole workflow is checked before any LLM call,
and ``driver(mode)`` returns a ``RunDriver`` (``api/driver.py``) with the run's spec and
graph, built once. The driver connects to (or starts) Ray, starts one Supervisor actor for
the run and follows its event stream; the final ``dict[str, TaskOutput]`` comes back. The
user's Tasks are not written: their ``status`` / ``result`` views show the last run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ray_orch.api.driver import DriverOptions, RunDriver
from ray_orch.api.driver_errors import interrupted
from ray_orch.api.run_checks import check_hierarchical, check_run
from ray_orch.api.supervisors import new_run_id
from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.core.secrets import redact_dsn
from ray_orch.core.stream import StreamEvent
from ray_orch.core.sync import run_sync
from ray_orch.engine.graph import Graph, Mode, build_graph, name_tasks
from ray_orch.engine.runspec import RunResult, RunSpec
from ray_orch.model.resolve import has_default_model
from ray_orch.observe.view import RunPicture
from ray_orch.policy.agent import Agent
from ray_orch.policy.outcomes import set_peers
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.jobs import DetachedRun
    from ray_orch.observe.analysis import RunMetrics

__all__ = ["Process"]

# Each process's last run, kept beside it (a run writes nothing onto the Process).
_last_runs: weakref.WeakKeyDictionary[Process, RunDriver] = weakref.WeakKeyDictionary()

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
        checkpoint_dir: where completed results are persisted (resume with ``resume=``):
            a directory, the SQLite run store's shorthand.
        store: the run store: a directory, ``sqlite:///dir`` or a
            ``postgresql://user:pw@host/db`` DSN (default: ``checkpoint_dir``, else
            ``$RAY_ORCH_STORE``). Checked before Ray starts: ``StoreError``.
        cache: cache every task's result (``Task(cache_ttl=...)`` per task).
        budget_tokens / budget_usd: stop dispatching once the run has used this much.
        progress: live progress on a terminal (default: on when stdout is a TTY).
        runtime_env / ray_init: passed to ``ray.init`` when the process starts Ray.
        memory: ``True`` (``Memory()``: ``~/.ray-orch/memory``), a ``Memory``, or a
            folder / ``postgresql://`` DSN: every task's output is remembered for
            ``user_id`` and the closest memories are recalled into prompts.
        user_id: whose memories the run reads and writes (users never mix).
        knowledge / knowledge_sources: files or folders every agent may draw on (indexed
            once by the driver, recalled by meaning).
        memory_config / embedder: PraisonAI's and CrewAI's settings (``user_id``, a store
            path, ``namespace``, ``limit``, the embedding model).
        memory_tools: give the model ``remember`` / ``recall`` tools.

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
                 checkpoint_dir: str | os.PathLike[str] | None = None,
                 store: str | os.PathLike[str] | None = None, cache: bool = False,
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
        from ray_orch.policy.recall import MEMORY_KEYWORDS, memory_plan

        self._memory = memory_plan({k: unknown.get(k) for k in MEMORY_KEYWORDS},
                                   who="Process")
        assert tasks is not None  # check_process refused None
        self.tasks = tasks
        self.task_list = name_tasks(tasks)
        # execute() outside a process finds its context by name (kept beside the tasks).
        set_peers(t for t in self.task_list if isinstance(t, Task))
        self.agents = list(agents or [])
        self.manager_llm = manager_llm
        self.name = name
        self.on_failure = on_failure
        self.max_visits = max_visits
        self.max_steps = max_steps
        from ray_orch.store.factory import store_spec

        # The run store's spec (a directory or a DSN), or None: runs keep no state.
        self.store = store_spec(store, checkpoint_dir)
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

        # Validated here: a definition error is raised before anything runs.
        return stream(self.driver(mode, tokens=tokens, **kwargs))

    def astream(self, mode: Mode = "workflow", *, tokens: bool = False,
                **kwargs: Any) -> AsyncIterator[StreamEvent]:
        """Async form of ``stream()``: ``async for ev in process.astream(): ...``."""
        from ray_orch.api.streaming import astream

        async def events() -> AsyncIterator[StreamEvent]:
            # Validated on the first step, as an async generator is.
            async for event in astream(self.driver(mode, tokens=tokens, **kwargs)):
                yield event

        return events()

    def cancel(self) -> None:
        """Cancel the running run: in-flight work is cancelled, completed results kept."""
        run = self.last_run
        if run is not None:
            run.cancel()

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
        return graph

    def check_run(self, mode: Mode, **kwargs: Any) -> None:
        """The run's own arguments (``resume=``, ...), checked before Ray starts; the CLI's
        ``validate`` checks them too.

        Raises:
            UnknownKeywordError, InvalidTaskFieldError: naming the argument.
        """
        check_run(self, mode, kwargs)

    _check_run = check_run  # the name earlier releases used

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
                with contextlib.suppress(Exception):  # a lost Supervisor has nothing to stop
                    self.cancel()
                run = self.last_run
                raise interrupted(run.run_id if run is not None else None, mode=mode,
                                  checkpoint_dir=redact_dsn(self.store) if self.store else None,
                                  verbose=bool(self.verbose)) from None
            finally:
                signal.signal(signal.SIGINT, previous)
        return run_sync(self._arun(mode, **kwargs))  # type: ignore[no-any-return]

    async def _arun(self, mode: Mode, *, live: Callable[[Event], None] | None = None,
                    tokens: bool = False, **kwargs: Any) -> dict[str, TaskOutput]:
        return await self.driver(mode, tokens=tokens, **kwargs).run(live=live)

    def driver(self, mode: Mode = "workflow", *, tokens: bool = False,
               **kwargs: Any) -> RunDriver:
        """A run of this process, validated and ready to start (nothing runs yet).

        Args:
            mode: ``"workflow"``, ``"sequential"`` or ``"hierarchical"``.
            tokens: model calls stream their answers (``token`` events).
            **kwargs: what ``workflow()`` takes (``resume=``, ``allow_drift=``,
                ``run_id=``, ``answers=``); an unknown one is an ``UnknownKeywordError``.

        Returns:
            A ``RunDriver``: ``await driver.run()`` (or ``driver.run_sync()``) runs it;
            ``process.events`` / ``.results`` / ``.metrics`` show the last driver's run.

        Raises:
            WorkflowDefinitionError, InvalidTaskFieldError, ApprovalError: before Ray
                starts or any model is called.
        """
        self.check_run(mode, **kwargs)
        resume, run_id = kwargs.get("resume"), kwargs.get("run_id")
        allow_drift: bool = kwargs.get("allow_drift", False)
        answers = kwargs.get("answers")
        if isinstance(resume, str):
            run_id = resume
        elif resume:
            run_id = "latest"
        graph = self.validate(mode)
        from ray_orch.api.approvals import approval_mode, check_answers
        from ray_orch.api.stores import latest_run_id, run_store

        store = run_store(self)  # StoreError here, before Ray starts
        if run_id == "latest" and store is not None:
            run_id = latest_run_id(store, self.name)
        approvals = approval_mode(self)
        spec = self._spec(mode, graph=graph, run_id=run_id, resume=bool(resume),
                          allow_drift=allow_drift, tokens=tokens, approvals=approvals,
                          answers=check_answers(self, run_id, answers, store), store=store)
        agents = spec.agents + [a for a in (spec.default_agent,) if a is not None]
        if spec.memory is not None:  # knowledge files indexed here, once, before Ray
            from ray_orch.policy.recall import index_for_run

            index_for_run(spec.memory, agents + [t.agent for t in self.task_list])
        options = DriverOptions(
            name=self.name, runtime_env=self.runtime_env, ray_init=self.ray_init,
            metrics=self.metrics_enabled, metrics_host=self.metrics_host,
            metrics_port=self.metrics_port, progress=self.progress, verbose=self.verbose,
            approval_handler=self.approval_handler,
            warm_agents=agents + [t.agent for t in self.task_list if t.agent is not None])
        driver = self._new_driver(spec, options)
        _last_runs[self] = driver
        return driver

    def _new_driver(self, spec: RunSpec, options: DriverOptions) -> RunDriver:
        """The driver of a run (``AgentTeam``'s process gives its own)."""
        return RunDriver(spec, tasks=self.task_list, options=options)

    def _spec(self, mode: Mode, *, graph: Graph, run_id: str | None, resume: bool,
              allow_drift: bool, tokens: bool, approvals: str | None,
              answers: dict[str, Any], store: Any) -> RunSpec:
        """The run as its Supervisor gets it; models are resolved here, where the
        driver's environment (``RAY_ORCH_MODEL``, keys) is set."""
        from ray_orch.policy.recall import run_plan

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
        from ray_orch.api.stores import job_run_id

        run_id = run_id or job_run_id() or new_run_id()
        return RunSpec(run_id=run_id, workflow=self.name,
                       mode=mode, tasks=self.task_list, graph=graph, agents=self.agents,
                       default_agent=default_agent, manager=manager,
                       max_visits=self.max_visits, max_steps=self.max_steps,
                       on_failure=self.on_failure, max_manager_calls=self.max_manager_calls,
                       store=store, resume=resume,
                       allow_drift=allow_drift, cache=self.cache,
                       budget_tokens=self.budget_tokens, budget_usd=self.budget_usd,
                       metrics=self.metrics_enabled, metrics_host=self.metrics_host,
                       metrics_port=self.metrics_port, tokens=tokens,
                       approvals=approvals, answers=answers,
                       memory=run_plan(self._memory, agents + [t.agent for t in self.task_list],
                                       run_id=run_id, workflow=self.name))

    # -- the last run (its driver's records) -------------------------------------------

    @property
    def last_run(self) -> RunDriver | None:
        """The driver of this process's last run (None before one)."""
        return _last_runs.get(self)

    @property
    def last_result(self) -> RunResult | None:
        """The ``RunResult`` of the last run (None before one ended)."""
        run = self.last_run
        return run.result if run is not None else None

    @property
    def events(self) -> list[Event]:
        """The events of the last run (of the one in progress, as they arrive)."""
        run = self.last_run
        return run.events if run is not None else []

    @property
    def _supervisor(self) -> Any:
        # The Supervisor of the run in progress (tests kill it to see the run heal).
        run = self.last_run
        return run.supervisor if run is not None else None

    def picture(self, mode: Mode | None = None) -> RunPicture:
        """What ``graph()`` and ``visualize_workflow`` draw: the graph (of ``mode``, else
        of the last run's mode) and the last run's results and events."""
        run = self.last_run
        mode = mode or (run.graph.mode if run is not None else "workflow")
        graph = run.graph if run is not None and run.graph.mode == mode else build_graph(
            self.task_list, mode, has_default_agent=True, needs_agents=False)
        return RunPicture(name=self.name, graph=graph,
                          result=run.result if run is not None else None,
                          events=list(run.events) if run is not None else [])

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

        return process_graph(self.picture(), format, Path(path) if path is not None else None)

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

        run = self.last_run
        edges = run.graph.upstream() if run is not None else {}
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


def _known_keywords() -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(Process.__init__).parameters) - {
        "self", "positional", "unknown"}
