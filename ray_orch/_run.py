"""One run of a process, as the Supervisor actor executes it.

``Run`` ties the plain-Python parts together: the scheduler decides what is ready, the
pools execute it, the retry/fallback/breaker/cache policy wraps each task, checkpoints
record each result once, and events stream back to the driver and the metrics hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._attempt import run_with_fallback
from ._breaker import breaker_guard
from ._errors import RunCancelledError, RunError, TaskTimeoutError
from ._events import Event
from ._graph import Graph, Mode, build_graph
from ._output import TaskOutput
from ._scheduler import Dispatch, Scheduler
from ._task import Task, _bridge

__all__ = ["RunResult", "RunSpec", "Run"]


@dataclass(kw_only=True)
class RunSpec:
    """Everything a Supervisor needs to run a process (pickled once, as one object)."""

    run_id: str
    workflow: str
    mode: Mode
    tasks: list[Task]
    agents: list[Any]
    default_agent: Any = None
    manager: Any = None
    max_visits: int = 10
    max_steps: int | None = None
    on_failure: str = "fail"
    checkpoint_dir: str | None = None
    resume: bool = False
    allow_drift: bool = False
    cache: bool = False
    budget_tokens: int | None = None
    budget_usd: float | None = None
    metrics: bool = True
    metrics_host: str | None = None
    metrics_port: int | None = None


@dataclass(kw_only=True)
class RunResult:
    """What the driver gets back."""

    run_id: str
    outputs: dict[str, TaskOutput]
    statuses: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    resumed: list[str] = field(default_factory=list)
    metrics_url: str | None = None


class Run:
    """Executes one ``RunSpec``; ``emit`` receives every event as it happens."""

    def __init__(self, spec: RunSpec, emit: Callable[[Event], None]) -> None:
        self.spec = spec
        self.emit_fn = emit
        agents_needed = spec.mode != "hierarchical"
        self.graph: Graph = build_graph(spec.tasks, spec.mode,
                                        has_default_agent=spec.default_agent is not None,
                                        needs_agents=agents_needed)
        self.scheduler = Scheduler(self.graph, max_visits=spec.max_visits,
                                   max_steps=spec.max_steps,
                                   on_failure=spec.on_failure)  # type: ignore[arg-type]
        self.pending: dict[asyncio.Task[TaskOutput], Dispatch] = {}
        self.ready_at: dict[tuple[str, int, int | None], float] = {}
        self.pools: Any = None
        self.cancelled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tokens = 0
        self.cost = 0.0
        self.manager: Any = None
        self.manager_agent: Any = None
        self.assigned: dict[tuple[str, int, int | None], Any] = {}
        self.manager_queue: list[Dispatch] = []
        self.manager_job: asyncio.Task[None] | None = None
        self.loads: dict[str, int] = {}

    # -- events ------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        self.emit_fn(Event(kind=kind, workflow=self.spec.workflow,  # type: ignore[arg-type]
                           run_id=self.spec.run_id, **fields))

    def agent_for(self, task: Task) -> Any:
        return task.agent if task.agent is not None else self.spec.default_agent

    # -- the run -----------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end (or the first unhandled failure) and return the result."""
        from actors.agent_actor import get_registry

        from ._dispatch import PoolSet

        self.loop = asyncio.get_running_loop()
        spec = self.spec
        self.emit("run_started", data={"tasks": len(self.graph.order), "mode": spec.mode})
        agents = self._all_agents()
        if spec.mode == "hierarchical":
            self._setup_manager()
            agents.append(self.manager_agent)
        self.pools = PoolSet(get_registry(), spec.run_id)
        tasks = {name: node.task for name, node in self.graph.nodes.items()}
        await self.pools.open(agents, tasks)
        error: BaseException | None = None
        try:
            self._launch(self.scheduler.start())
            while self.pending or self.manager_queue or self.manager_job:
                waiting: set[asyncio.Future[Any]] = set(self.pending)
                if self.manager_job is not None:
                    waiting.add(self.manager_job)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if self.manager_job is not None and self.manager_job in done:
                    done.discard(self.manager_job)
                    self.manager_job.result()
                    self.manager_job = None
                    self._kick_manager()
                for finished in done:
                    self._settle(finished)
                if self.scheduler.abort is not None:
                    break
        except asyncio.CancelledError:
            self.cancelled = True
        finally:
            if self.pending:
                for pending in self.pending:
                    pending.cancel()
                await asyncio.gather(*self.pending, return_exceptions=True)
            await self.pools.close()
        if self.cancelled:
            error = RunCancelledError(f"run {spec.run_id} was cancelled")
        elif self.scheduler.abort is not None:
            error = self.scheduler.abort
        statuses = self.scheduler.statuses()
        if self.cancelled or error is not None:
            statuses = {n: ("failed" if s == "running" and n in self.scheduler.errors else
                            "pending" if s in ("running", "pending") else s)
                        for n, s in statuses.items()}
        self.emit("run_finished", status="cancelled" if self.cancelled else
                  "failed" if error else "completed")
        return RunResult(run_id=spec.run_id, outputs=dict(self.scheduler.outputs),
                         statuses=statuses,
                         errors={n: str(e) for n, e in self.scheduler.errors.items()},
                         skip_reasons=dict(self.scheduler.skip_reasons), error=error,
                         resumed=list(self.scheduler.resumed))

    def _all_agents(self) -> list[Any]:
        agents = list(self.spec.agents)
        for task in self.spec.tasks:
            for agent in (task.agent, task.fallback_agent):
                if agent is not None:
                    agents.append(agent)
        if self.spec.default_agent is not None and any(t.agent is None for t in self.spec.tasks):
            agents.append(self.spec.default_agent)
        return [a for a in agents if hasattr(a, "key")]

    def _launch(self, dispatches: list[Dispatch]) -> None:
        now = time.time()
        for dispatch in dispatches:
            self.ready_at[dispatch.key] = now
            task = self.graph.nodes[dispatch.task].task
            if self.manager is not None and task.agent is None:
                self.emit("task_ready", task=dispatch.task)
                self.manager_queue.append(dispatch)
                continue
            self.emit("task_ready", task=dispatch.task, agent_role=_role(self.agent_for(task)))
            self._start(dispatch)
        self._kick_manager()

    def _start(self, dispatch: Dispatch, agent: Any = None) -> None:
        job = asyncio.ensure_future(self._run_one(dispatch, agent))
        self.pending[job] = dispatch

    # -- hierarchical ------------------------------------------------------------------

    def _setup_manager(self) -> None:
        from ._agent import Agent
        from ._manager import Manager
        from ._models import resolve_llm

        config = resolve_llm(self.spec.manager, who="the hierarchical manager (manager_llm)")
        self.manager_agent = Agent(role="Manager", goal="Coordinate the project efficiently",
                                   llm=config, name="ray-orch-manager", timeout=60.0)
        workers = [a for a in self.spec.agents if hasattr(a, "key")]

        async def ask(prompt: str, schema: Any) -> str:
            pool = self.pools.pool_for(self.manager_agent)
            member = min(pool.members, key=lambda m: m.in_flight)
            return await member.handle.ask.remote(  # type: ignore[no-any-return]
                self.manager_agent.key(), prompt, schema.model_json_schema())

        self.manager = Manager(workers, ask, max_calls=max(10, 4 * len(self.graph.order)))

    def _kick_manager(self) -> None:
        if self.manager is None or self.manager_job is not None or not self.manager_queue:
            return
        batch, self.manager_queue = self.manager_queue, []
        self.manager_job = asyncio.ensure_future(self._assign(batch))

    async def _assign(self, batch: list[Dispatch]) -> None:
        ready = {}
        for dispatch in batch:
            task = self.graph.nodes[dispatch.task].task
            ready[dispatch.task] = task.description
        loads = dict(self.loads)
        assignments = {a.task: a for a in await self.manager.assign(ready, loads)}
        for dispatch in batch:
            chosen = assignments[dispatch.task]
            agent = self.manager.agents[chosen.agent]
            self.assigned[dispatch.key] = chosen
            self.loads[agent.role] = self.loads.get(agent.role, 0) + 1
            self.emit("decision", task=dispatch.task, agent_role=agent.role,
                      data={"route": f"assign:{agent.role}", "by": chosen.by})
            self._start(dispatch, agent)

    def _settle(self, finished: asyncio.Task[TaskOutput]) -> None:
        dispatch = self.pending.pop(finished)
        task = self.graph.nodes[dispatch.task].task
        chosen = self.assigned.pop(dispatch.key, None)
        role = chosen.agent if chosen is not None else _role(self.agent_for(task))
        if chosen is not None:
            self.loads[chosen.agent] -= 1
        started = self.ready_at.pop(dispatch.key, time.time())
        try:
            output = finished.result()
        except asyncio.CancelledError:
            return
        except BaseException as exc:
            cause = getattr(exc, "cause", None) or exc
            self.emit("task_finished", task=dispatch.task, agent_role=role, status="failed",
                      outcome=type(cause).__name__, duration_s=time.time() - started)
            self._launch(self.scheduler.failed(dispatch.task, cause))
            return
        output.task_id = dispatch.task
        meta = output.metadata
        if chosen is not None:
            meta.update({"assigned_by": chosen.by, "assigned_agent": chosen.agent,
                         "assignment_reason": chosen.reason,
                         "manager_calls": self.manager.calls})
        self._account(dispatch, role, meta)
        self.emit("task_finished", task=dispatch.task, agent_role=output.agent or role,
                  model=meta.get("model"), status="completed",
                  duration_s=meta.get("execution_time"),
                  data={"queue_s": meta.get("queue_s", 0.0), "iteration": dispatch.iteration,
                        "started": meta.get("started_at"), "finished": time.time(),
                        "retries": meta.get("retry_count", 0)})
        if dispatch.iteration is not None:
            new = self.scheduler.iteration_completed(dispatch.task, dispatch.iteration, output)
        else:
            if "decision" in meta:
                self.emit("decision", task=dispatch.task, data={"route": meta["decision"]})
            new = self.scheduler.completed(dispatch.task, output)
        self._launch(new)

    def _account(self, dispatch: Dispatch, role: str | None, meta: dict[str, Any]) -> None:
        for call in meta.get("llm_calls", []):
            self.emit("llm_call", task=dispatch.task, agent_role=role, model=call.get("model"),
                      outcome=call.get("outcome"), duration_s=call.get("duration_s"),
                      tokens_prompt=call.get("prompt_tokens", 0),
                      tokens_completion=call.get("completion_tokens", 0),
                      cost_usd=call.get("cost_usd", 0.0))
        if meta.get("retry_count"):
            self.emit("retry", task=dispatch.task, agent_role=role,
                      data={"count": meta["retry_count"]})
        if meta.get("fallback"):
            self.emit("fallback", task=dispatch.task, agent_role=role)
        self.tokens += int(meta.get("tokens_used", 0) or 0)
        self.cost += float(meta.get("cost_usd", 0.0) or 0.0)

    async def _run_one(self, dispatch: Dispatch, assigned: Any = None) -> TaskOutput:
        task = self.graph.nodes[dispatch.task].task
        context = {name: self.scheduler.outputs[name] for name in dispatch.context}
        queued = time.time()
        meta: dict[str, Any] = {}

        async def call(agent: Any) -> TaskOutput:
            pool = self.pools.pool_for(agent)
            meta.setdefault("started_at", time.time())
            return await pool.submit(self.spec.run_id, dispatch.task, dispatch.inputs, context,  # type: ignore[no-any-return]
                                     dispatch.missing, dispatch.iteration)

        async def body() -> TaskOutput:
            if task.overrides_execute():
                return await self._run_override(task, dispatch, context)
            primary = assigned or self.agent_for(task)
            if task.agent is None and primary is not None:
                # Tasks without an agent run on the default agent; fallback still applies.
                try:
                    return await call(primary)
                except Exception:
                    if task.fallback_agent is None:
                        raise
                    return await call(task.fallback_agent)
            return await run_with_fallback(task, call)

        coro = breaker_guard(task, body)
        try:
            output = await (asyncio.wait_for(coro, task.timeout) if task.timeout else coro)
        except asyncio.TimeoutError:
            raise TaskTimeoutError(f"task '{dispatch.task}' exceeded its timeout of "
                                   f"{task.timeout} s", task=dispatch.task) from None
        output.metadata["queue_s"] = max(0.0, meta.get("started_at", queued) - queued)
        output.metadata["started_at"] = meta.get("started_at", queued)
        return output

    async def _run_override(self, task: Task, dispatch: Dispatch,
                            context: dict[str, TaskOutput]) -> TaskOutput:
        """A user's ``execute()`` override runs here, in a thread of the Supervisor, on the
        one Task object of this run (so state like failure counts persists between
        visits); its ``super().execute()`` hands the attempt to the pools."""
        loop = asyncio.get_running_loop()
        task._context_outputs = context
        task._missing_context = dict(dispatch.missing)

        def bridge(inner: Task, inputs: dict[str, Any] | None) -> TaskOutput:
            async def go() -> TaskOutput:
                async def call(agent: Any) -> TaskOutput:
                    pool = self.pools.pool_for(agent)
                    return await pool.submit(self.spec.run_id, dispatch.task,  # type: ignore[no-any-return]
                                             inputs if inputs is not None else dispatch.inputs,
                                             context, dispatch.missing, dispatch.iteration)

                return await run_with_fallback(inner, call)

            return asyncio.run_coroutine_threadsafe(go(), loop).result()

        def target() -> TaskOutput:
            _bridge.call = bridge
            try:
                return task.execute(dispatch.inputs)  # type: ignore[no-any-return]
            finally:
                _bridge.call = None

        result = await loop.run_in_executor(None, target)
        if not isinstance(result, TaskOutput):
            raise RunError(f"task '{dispatch.task}': execute() returned "
                           f"{type(result).__name__}, expected TaskOutput", task=dispatch.task)
        return result


def _role(agent: Any) -> str | None:
    role = getattr(agent, "role", None)
    return role if isinstance(role, str) else None

