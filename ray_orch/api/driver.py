"""``RunDriver``: one run of a validated workflow, seen from the driver.

``Process`` builds and validates (``Process.driver(mode)`` returns a driver with the run's
``RunSpec``, its graph built once); the driver starts the run on the cluster (Ray, the
registry, a Supervisor), follows its events, heals it when its Supervisor is lost
(``api/heal.py``), streams it (``api/streaming.py``) and cancels it. Its records are the
run's: ``events``, ``result`` (the ``RunResult``), ``graph``. It never writes onto the
user's tasks: their ``status`` / ``result`` views are published through
``policy.outcomes``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ray_orch.api.driver_errors import as_run_error, reap_lost_supervisor
from ray_orch.api.jobs import RUN_ID_ENV, event_line
from ray_orch.api.result_line import items, result_line, start_copy
from ray_orch.api.run_checks import check_api_keys
from ray_orch.api.supervisors import keep_supervisor, lease_supervisor, pack, take_supervisor
from ray_orch.core import trace
from ray_orch.core.errors import RayOrchError, RunCancelledError, RunError
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.core.secrets import storing
from ray_orch.engine.graph import Graph
from ray_orch.engine.runspec import RunResult, RunSpec
from ray_orch.observe.tracing import configure as configure_tracing
from ray_orch.observe.tracing import flush as flush_tracing
from ray_orch.observe.tracing import settings_from
from ray_orch.policy.outcomes import set_outcome
from ray_orch.policy.task import Task

__all__ = ["DriverOptions", "RunDriver"]

_announced = False  # the metrics endpoint is printed once per driver process


@dataclass(kw_only=True)
class DriverOptions:
    """How a driver reaches the cluster and shows its run (``Process`` fills it)."""

    name: str = "workflow"
    """The workflow's name (the progress display's title)."""
    runtime_env: dict[str, Any] | None = None
    """Passed to ``ray.init`` when this driver starts Ray."""
    ray_init: dict[str, Any] = field(default_factory=dict)
    """Further ``ray.init`` keywords when this driver starts Ray."""
    metrics: bool = True
    """Start (or join) the MetricsHub."""
    metrics_host: str | None = None
    """Where the MetricsHub listens (default: 127.0.0.1)."""
    metrics_port: int | None = None
    """The MetricsHub's port (default: any free one)."""
    progress: bool | None = None
    """Live progress on a terminal (None: when stdout is a TTY)."""
    verbose: bool = False
    """Print each event."""
    approval_handler: Callable[..., Any] | None = None
    """Answers inline approval requests (None: the console, when the run asks)."""
    warm_agents: list[Any] = field(default_factory=list)
    """Agents whose processes a fresh private Ray starts side by side with the run's."""


class RunDriver:
    """Starts, follows, heals, streams and cancels one run (from ``Process.driver``).

    Args:
        spec: the run as its Supervisor gets it (graph built and validated).
        tasks: the user's tasks, in definition order (their views show this run).
        options: how to reach the cluster and show the run.

    Attributes:
        spec: the run's ``RunSpec``; ``spec.run_id`` is the run's id once it started.
        graph: the validated workflow graph (the one shipped to the Supervisor).
        events: every event of the run so far (not token deltas), in order.
        result: the ``RunResult`` once the run has ended (None before).
        supervisor: the handle of the Supervisor running it (None before it starts).

    Example:
        >>> from ray_orch import Agent, Process, Task
        >>> from ray_orch.testing import StubLLMServer
        >>> with StubLLMServer(reply="ok") as model:
        ...     agent = Agent(role="Worker", goal="Work", llm=model.llm)
        ...     driver = Process(tasks={"a": Task(description="A", agent=agent)}).driver()
        ...     outputs = driver.run_sync()
        >>> (outputs["a"].raw, driver.result.statuses["a"], driver.graph.order)
        ('ok', 'completed', ['a'])
    """

    def __init__(self, spec: RunSpec, *, tasks: list[Task], options: DriverOptions) -> None:
        assert spec.graph is not None, "a driver runs a validated graph"
        self.spec = spec
        self.graph: Graph = spec.graph
        self.tasks = list(tasks)
        self.options = options
        self.events: list[Event] = []
        self.result: RunResult | None = None
        self.supervisor: Any = None
        self.registry: Any = None
        self._by_name = {t.id: t for t in self.tasks}  # once a run, not once an event
        # The user's store, if any: where a lost run's partial results are read from.
        self._store = spec.store
        self._deliveries: Any = None
        self._pending_jobs: list[Awaitable[Any]] = []

    # -- public ------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id (``"latest"`` until a resumed run's Supervisor names it)."""
        for event in self.events:
            if event.run_id:
                return str(event.run_id)
        return self.spec.run_id

    @property
    def outputs(self) -> dict[str, TaskOutput]:
        """The outputs of the run (empty before it ended)."""
        return dict(self.result.outputs) if self.result else {}

    def run_sync(self, *, live: Callable[[Event], None] | None = None
                 ) -> dict[str, TaskOutput]:
        """``run()`` from synchronous code (works beside a running event loop)."""
        from ray_orch.core.sync import run_sync

        return run_sync(self.run(live=live))  # type: ignore[no-any-return]

    async def run(self, *, live: Callable[[Event], None] | None = None
                  ) -> dict[str, TaskOutput]:
        """Run to the end and return every completed task's output by name.

        Args:
            live: called with every event as it arrives (the run is then streamed: its
                Supervisor sends events at once, with outputs).

        Raises:
            RunError: the run failed (``.results`` holds what completed); its subclasses
                say how (cancelled, paused for approval, Supervisor lost, ...).
        """
        self.spec.stream = live is not None
        # Traced when the driver's environment names an OTLP endpoint: the run's spans
        # (Supervisor, members, tools) hang under this one.
        telemetry = settings_from(os.environ)
        if not configure_tracing(telemetry):
            self.spec.telemetry = {}
            return await self._execute(live)
        with trace.span(f"invoke_workflow {self.spec.workflow}",
                        {"gen_ai.operation.name": "invoke_workflow",
                         "gen_ai.workflow.name": self.spec.workflow,
                         "ray_orch.mode": self.spec.mode,
                         "openinference.span.kind": "CHAIN"}):
            self.spec.telemetry = telemetry
            self.spec.trace_context = trace.carrier()
            try:
                return await self._execute(live)
            finally:
                await asyncio.to_thread(flush_tracing)

    async def follow(self, packed: bytes, *, live: Callable[[Event], None] | None = None,
                     asker: Any = None) -> RunResult:
        """Run ``packed`` (the pickled spec) on the current Supervisor and follow its
        events to the result (``heal.follow`` calls it again on a new Supervisor).

        Raises:
            RunCancelledError: the run ended without a result.
            ActorDiedError / ActorUnavailableError: the Supervisor was lost.
        """
        from ray.exceptions import RayTaskError

        from ray_orch.observe.progress import Progress

        reply, copy = await result_line(self.spec.run_id)
        start = start_copy(self.supervisor, packed, reply)
        stream = self.supervisor.run.options(num_returns="streaming").remote(packed, reply,
                                                                            start)
        result: RunResult | None = None
        units, pending = self.graph.work_units()
        with Progress(total=units or len(self.tasks), pending=pending,
                      enabled=self.options.progress, verbose=self.options.verbose,
                      description=self.options.name) as progress:
            async for ref in items(stream, reply, copy):
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
                    self._arrived(Event.model_validate(raw), live, asker, progress)
                if result is not None:
                    break  # the last item: no need to wait for the stream's end too
        if result is None:
            raise RunCancelledError(f"run {self.spec.run_id} ended without a result")
        return result

    async def replace_supervisor(self) -> None:
        """The Supervisor was lost: stop what it held and lease a new one."""
        await reap_lost_supervisor(self.registry, self.supervisor)
        self.supervisor = await lease_supervisor(self.registry)

    def cancel(self) -> None:
        """Cancel the run: in-flight work is cancelled, completed results kept."""
        if self.supervisor is not None:
            import ray

            # Bounded: Ctrl-C must end the driver within seconds, whatever the cluster does.
            ray.get(self.supervisor.cancel.remote(), timeout=15)

    def later(self, job: Awaitable[Any]) -> None:
        """Await ``job`` before the run returns (after-event work, like callbacks)."""
        if self._deliveries is not None:
            self._deliveries.later(job)
        else:
            self._pending_jobs.append(job)

    # -- hooks (``AgentTeam``'s driver overrides them) ---------------------------------

    def on_event(self, event: Event) -> None:
        """Every event the run keeps, as it arrives (after it was recorded)."""
        global _announced
        if event.kind == "run_started" and event.data.get("metrics_url") and not _announced:
            _announced = True
            print(f"[ray-orch] metrics: {event.data['metrics_url']}", file=sys.stderr)
        if event.kind == "tool_call" and event.data.get("stdout"):
            sys.stdout.write(event.data["stdout"])  # what the tool printed in its worker
            sys.stdout.flush()
        task = self._by_name.get(event.task or "")
        if task is not None and event.kind == "task_ready" and task.status == "pending":
            set_outcome(task, status="running")

    def output_view(self) -> Callable[[TaskOutput, Any], TaskOutput] | None:
        """What changes an output before its callback sees it (None: nothing)."""
        return None

    # -- internals ---------------------------------------------------------------------

    def _arrived(self, event: Event, live: Callable[[Event], None] | None, asker: Any,
                 progress: Callable[[Event], None]) -> None:
        if live is not None:
            live(event)
        if os.environ.get(RUN_ID_ENV):  # a detached run's job: its log shows its events
            line = event_line(event)
            if line is not None:
                print(line, flush=True)
        if event.kind == "task_completed":
            self._deliveries.on_event(event)  # callbacks, output files
            return
        if event.kind in ("token", "tool_progress"):
            return  # the stream's alone: not kept with the run's events
        if event.kind == "approval_requested" and asker is not None:
            asker.on_event(event.data, self.supervisor, screen=progress)
        self.events.append(event)
        self.on_event(event)
        progress(event)

    async def _start(self) -> tuple[bytes, Any]:
        """Ray, the registry and a Supervisor; returns the packed spec and the kept
        Supervisor taken (None: a new one was leased)."""
        from ray_orch.api import heal
        from ray_orch.api.runtime import ensure_ray, first_on_new_runtime

        spec, options = self.spec, self.options
        packed = pack(spec)  # here, to name what cannot be sent before Ray starts
        check_api_keys([*options.warm_agents, *(t.fallback_agent for t in self.tasks)])
        try:
            fresh = ensure_ray(runtime_env=options.runtime_env, **options.ray_init)
        except Exception as exc:
            raise RunError(f"run {spec.run_id}: Ray could not be started or reached "
                           f"({type(exc).__name__}: {exc}); check RAY_ADDRESS and "
                           "Process(ray_init=...)", run_id=spec.run_id) from exc
        if spec.store is not None:  # members on any node reach the same store
            from ray_orch.api.stores import keep_definition, shipped

            store = spec.store
            spec.store = shipped(store)
            packed = pack(spec)
            if spec.approvals == "pause":
                with storing():  # API keys as references to their variables, not values
                    keep_definition(store, spec, pack(spec))
        if heal.prepare(spec):  # a standing runtime journals every run
            packed = pack(spec)
        from actors.registry import get_registry

        self.registry = registry = get_registry()
        kept = take_supervisor(registry)
        # Asked for first: the registry starts the Supervisor's process before members'.
        leased = None if kept else lease_supervisor(registry)
        if fresh or first_on_new_runtime():  # the run's processes start side by side
            from ray_orch.api.warm import start_in_parallel

            start_in_parallel(registry, options.warm_agents, metrics=options.metrics,
                              metrics_host=options.metrics_host,
                              metrics_port=options.metrics_port)
        self.supervisor = kept if leased is None else await leased
        return packed, kept

    async def _execute(self, live: Callable[[Event], None] | None) -> dict[str, TaskOutput]:
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        from ray_orch.api import heal
        from ray_orch.api.approvals import Asker
        from ray_orch.api.callbacks import Deliveries

        spec = self.spec
        asker = Asker(self.options.approval_handler) if spec.approvals == "inline" else None
        packed, kept = await self._start()
        self.events = []
        self._deliveries = Deliveries(self._by_name, view=self.output_view())
        for job in self._pending_jobs:
            self._deliveries.later(job)
        self._pending_jobs = []
        for task in self.tasks:
            set_outcome(task, status="pending", result=None)
        alive = True
        try:
            try:  # a lost Supervisor is replaced, resuming from the journal
                result = await heal.follow(self, packed, pack=pack, live=live, asker=asker)
            except (ActorDiedError, ActorUnavailableError):
                if kept is None or self.events:
                    raise
                # The kept Supervisor died while idle (its node went away): nothing ran.
                await self.replace_supervisor()
                result = await self.follow(packed, live=live, asker=asker)
        except asyncio.CancelledError:
            await self.supervisor.cancel.remote()  # returns once the run has wound down
            raise
        except (ActorDiedError, ActorUnavailableError) as exc:
            alive = False  # a dead Supervisor is not kept; what it held is stopped
            await reap_lost_supervisor(self.registry, self.supervisor)
            done = [e.task for e in self.events
                    if e.kind == "task_finished" and e.status == "completed" and e.task]
            raise as_run_error(exc, run_id=spec.run_id, store=self._store,
                               lost=True, completed=list(dict.fromkeys(done))) from exc
        except Exception as exc:
            typed = as_run_error(exc, run_id=spec.run_id, store=self._store, lost=False)
            if typed is exc:
                raise
            raise typed from exc
        finally:
            if alive:  # idle again, whether its run ended well or not
                keep_supervisor(self.registry, self.supervisor)
            await self._deliveries.drain()  # async callbacks end before the run returns
            if asker is not None:
                await asyncio.gather(*asker.jobs, return_exceptions=True)
        if asker is not None:
            asker.raise_failure()
        self.result = result
        self._publish(result)
        self._deliveries.finish(result.outputs)
        if result.error is not None:
            _raise_for(result, spec)
        return result.outputs

    def _publish(self, result: RunResult) -> None:
        """The user's tasks' views show this run (nothing is written onto them)."""
        for task in self.tasks:
            set_outcome(task, status=result.statuses.get(task.id, "skipped"),
                        result=result.outputs.get(task.id))


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
