"""One run of a process, as the Supervisor actor executes it.

``Run`` ties the plain-Python parts together: the scheduler decides what is ready, the
pools execute it, the retry/fallback/breaker/cache policy wraps each task, checkpoints
record each result once, and events stream back to the driver and the metrics hub.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._agent import role_of
from ._attempt import run_with_fallback
from ._breaker import breaker_guard
from ._caching import from_cache, key_for, ttl_for
from ._errors import BudgetExceededError, RunCancelledError, RunError, TaskTimeoutError
from ._events import Event
from ._graph import Graph, Mode, build_graph
from ._journal import Journal
from ._output import TaskOutput
from ._prompt import task_prompt
from ._scheduler import Dispatch, Scheduler
from ._task import Task, _bridge

__all__ = ["Run", "RunResult", "RunSpec"]


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
    max_manager_calls: int | None = None
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
    activated_by: dict[str, str | None] = field(default_factory=dict)


class Run:
    """Executes one ``RunSpec``; ``emit`` receives every event as it happens."""

    def __init__(self, spec: RunSpec, emit: Callable[[Event], None]) -> None:
        self.spec = spec
        self.emit_fn = emit
        agents_needed = spec.mode != "hierarchical"
        self.graph: Graph = build_graph(spec.tasks, spec.mode,
                                        has_default_agent=spec.default_agent is not None,
                                        needs_agents=agents_needed)
        self.journal: Journal | None = None
        restored: dict[tuple[str, int], TaskOutput] = {}
        restored_iterations: dict[tuple[str, int], dict[int, TaskOutput]] = {}
        if spec.checkpoint_dir:
            self.journal = Journal(spec.checkpoint_dir, run_id=spec.run_id,
                                   workflow=spec.workflow, definition=self.graph.definition(),
                                   resume=spec.resume, allow_drift=spec.allow_drift)
            spec.run_id = self.journal.run_id
            loops = [n for n, node in self.graph.nodes.items() if node.task.task_type == "loop"]
            restored, restored_iterations = self.journal.restored(loops, spec.max_visits)
        # What members know this run by: unique to this execution, since a resumed run
        # keeps its run id and a member must tell a late call of the old one apart.
        self.members_key = f"{spec.run_id}/{uuid.uuid4().hex[:8]}"
        self.scheduler = Scheduler(self.graph, max_visits=spec.max_visits,
                                   max_steps=spec.max_steps,
                                   on_failure=spec.on_failure,  # type: ignore[arg-type]
                                   restored=restored, restored_iterations=restored_iterations)
        self.batcher: Any = None
        self.metrics_url: str | None = None
        self.metrics_error: str | None = None
        self.cache: Any = None
        self.budget_error: BudgetExceededError | None = None
        self.gauges: dict[tuple[str, Any], Event] = {}
        self.gauges_sent = 0.0
        self.gauges_counted = 0.0
        self.override_threads: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending: dict[asyncio.Task[TaskOutput], Dispatch] = {}
        self.finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self.ready_at: dict[tuple[str, int, int | None], float] = {}
        self.pools: Any = None
        self.cancelled = False
        self.tokens = 0
        self.cost = 0.0
        self.manager: Any = None
        self.manager_agent: Any = None
        self.assigned: dict[tuple[str, int, int | None], Any] = {}
        self.manager_queue: list[Dispatch] = []
        self.manager_job: asyncio.Task[None] | None = None
        self.loads: dict[str, int] = {}
        # Hand-offs (see _hand_off): where each running task's visit runs, by task name,
        # and the followers queued behind one, by the follower's name.
        self.chaining = False
        self.running_on: dict[str, tuple[Any, Any, str]] = {}  # pool, member, token
        self.handed: dict[str, _Handed] = {}
        self.tokens_issued = 0

    # -- events ------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        self.send(Event(kind=kind, workflow=self.spec.workflow,  # type: ignore[arg-type]
                        run_id=self.spec.run_id, **fields))

    def send(self, event: Event) -> None:
        """To the driver, and (batched) to the metrics hub."""
        if event.kind in _GAUGES:
            # Gauges only need their latest value: at most one per key every 0.1 s, so a
            # 10,000-task fan-out does not ship 20,000 pool snapshots.
            self.gauges[(event.kind, event.data.get("pool"))] = event
            if event.ts - self.gauges_sent < _GAUGE_INTERVAL:
                return
            self.flush_gauges()
            return
        self._deliver(event)

    def flush_gauges(self) -> None:
        pending, self.gauges = self.gauges, {}
        self.gauges_sent = time.time()
        for event in pending.values():
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        self.emit_fn(event)
        if self.batcher is not None:
            self.batcher.add(event)

    async def _open_services(self) -> None:
        """The cluster-wide services this run uses: metrics hub and result cache."""
        if self.spec.metrics:
            from actors.metrics_hub import checked_endpoint, start_metrics_hub

            from ._metrics import EventBatcher

            try:
                # Looking the named hub up is a blocking call: keep the event loop free.
                hub, wanted = await asyncio.get_running_loop().run_in_executor(
                    None, start_metrics_hub, self.spec.metrics_host, self.spec.metrics_port)
                self.metrics_url = checked_endpoint(await hub.endpoint.remote(), wanted)
            except Exception as exc:  # metrics must never fail a run
                self.metrics_error = f"{type(exc).__name__}: {exc}"
            else:
                self.batcher = EventBatcher(lambda batch: hub.push.remote(batch))
        if self.spec.cache or any(t.cache_ttl for t in self.spec.tasks):
            from actors.cache_actor import get_cache_actor

            self.cache = get_cache_actor(self.spec.checkpoint_dir)

    def agent_for(self, task: Task) -> Any:
        return task.agent if task.agent is not None else self.spec.default_agent

    # -- the run -----------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end (or the first unhandled failure) and return the result."""
        from actors.agent_actor import get_registry

        from ._dispatch import PoolSet

        self.started = time.time()
        spec = self.spec
        error: BaseException | None = None
        internal: BaseException | None = None
        try:
            await self._open_services()
            resumed = sorted({k[0] for k in self.scheduler.restored})
            self.emit("run_started", data={"tasks": len(self.graph.order), "mode": spec.mode,
                                           "metrics_url": self.metrics_url,
                                           "metrics_error": self.metrics_error,
                                           "resumed": resumed})
            agents = self._all_agents()
            if spec.mode == "hierarchical":
                self._setup_manager()
                agents.append(self.manager_agent)
            self.pools = PoolSet(get_registry(), self.members_key)
            tasks = {name: node.task for name, node in self.graph.nodes.items()}
            await self.pools.open(agents, tasks,
                                  bind_now=any(t.timeout for t in tasks.values()))
            self.chaining = self._chaining_allowed()
            self._launch(self.scheduler.start())
            while self.pending or self.manager_queue or self.manager_job:
                # Jobs report themselves here when done: O(1) a completion, where
                # asyncio.wait over every pending job would be O(pending) (quadratic
                # for a 10,000-item fan-out).
                done = [await self.finished.get()]
                while not self.finished.empty():
                    done.append(self.finished.get_nowait())
                for job in done:
                    if job is self.manager_job:
                        self.manager_job = None
                        job.result()
                        self._kick_manager()
                    elif job in self.pending:
                        self._settle(job)  # type: ignore[arg-type]
                if self.scheduler.abort is not None:
                    break
        except asyncio.CancelledError:
            self.cancelled = True
        except Exception as exc:  # an engine fault still ends the run cleanly, with a result
            internal = exc
        finally:
            jobs: list[asyncio.Future[Any]] = [*self.pending]
            jobs += [self.manager_job] if self.manager_job is not None else []
            for job in jobs:
                job.cancel()
            for name in list(self.handed):
                self._drop_handed(name)
            await asyncio.gather(*jobs, return_exceptions=True)
            self.manager_job = None
            if self.pools is not None:
                await self.pools.close()
            if self.override_threads is not None:
                self.override_threads.shutdown(wait=False, cancel_futures=True)
        if self.cancelled:
            error = RunCancelledError(f"run {spec.run_id} was cancelled")
        elif internal is not None:
            error = RunError(f"run {spec.run_id} failed: {type(internal).__name__}: {internal}",
                             run_id=spec.run_id, original=_portable(internal))
        elif self.scheduler.abort is not None:
            error = self.scheduler.abort
        elif self.budget_error is not None:
            error = self.budget_error
        statuses = self.scheduler.statuses()
        if self.cancelled or error is not None:
            statuses = {n: ("failed" if s == "running" and n in self.scheduler.errors else
                            "pending" if s in ("running", "pending") else s)
                        for n, s in statuses.items()}
        self._gauges(force=True)
        self.flush_gauges()
        status = "cancelled" if self.cancelled else "failed" if error else "completed"
        self.emit("run_finished", status=status, duration_s=time.time() - self.started)
        if self.batcher is not None:
            self.batcher.close()
        if self.journal is not None:
            self.journal.finish(status)
        return RunResult(run_id=spec.run_id, metrics_url=self.metrics_url,
                         outputs=dict(self.scheduler.outputs),
                         statuses=statuses,
                         errors={n: str(e) for n, e in self.scheduler.errors.items()},
                         skip_reasons=dict(self.scheduler.skip_reasons), error=error,
                         resumed=list(self.scheduler.resumed),
                         activated_by=dict(self.scheduler.activator))

    def _all_agents(self) -> list[Any]:
        agents = list(self.spec.agents)
        for task in self.spec.tasks:
            for agent in (task.agent, task.fallback_agent):
                if agent is not None:
                    agents.append(agent)
        if self.spec.default_agent is not None and any(t.agent is None for t in self.spec.tasks):
            agents.append(self.spec.default_agent)
        # Agents, and any object with chat(prompt) (the Task docstring's adapters).
        return [a for a in agents if hasattr(a, "key") or callable(getattr(a, "chat", None))]

    def _launch(self, dispatches: list[Dispatch]) -> None:
        if self.budget_error is not None:
            # Budget reached: nothing new starts; in-flight work finishes on its own.
            return
        now = time.time()
        for dispatch in dispatches:
            self.ready_at[dispatch.key] = now
            task = self.graph.nodes[dispatch.task].task
            if self.manager is not None and task.agent is None:
                self.emit("task_ready", task=dispatch.task)
                self.manager_queue.append(dispatch)
                continue
            self.emit("task_ready", task=dispatch.task, agent_role=role_of(self.agent_for(task)))
            self._start(dispatch)
        self._kick_manager()

    def _start(self, dispatch: Dispatch, agent: Any = None) -> None:
        job = asyncio.ensure_future(self._run_one(dispatch, agent))
        self.pending[job] = dispatch
        job.add_done_callback(self.finished.put_nowait)

    # -- hierarchical ------------------------------------------------------------------

    def _setup_manager(self) -> None:
        from ._agent import Agent
        from ._manager import Manager
        from ._models import resolve_llm

        config = resolve_llm(self.spec.manager, who="the hierarchical manager (manager_llm)")
        self.manager_agent = Agent(role="Manager", goal="Coordinate the project efficiently",
                                   llm=config, name="ray-orch-manager", timeout=60.0)
        workers = [a for a in self.spec.agents if isinstance(getattr(a, "role", None), str)]

        async def ask(prompt: str, schema: Any) -> str:
            pool = self.pools.pool_for(self.manager_agent)
            member = min(pool.members, key=lambda m: m.in_flight)
            return await member.handle.ask.remote(  # type: ignore[no-any-return]
                self.manager_agent.key(), prompt, schema.model_json_schema(),
                self.members_key, pool.bind_for(member))

        limit = self.spec.max_manager_calls or max(10, 4 * len(self.graph.order))
        self.manager = Manager(workers, ask, max_calls=limit)

    def _kick_manager(self) -> None:
        if self.manager is None or self.manager_job is not None or not self.manager_queue:
            return
        batch, self.manager_queue = self.manager_queue, []
        self.manager_job = asyncio.ensure_future(self._assign(batch))
        self.manager_job.add_done_callback(self.finished.put_nowait)

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
            self.emit("assignment", task=dispatch.task, agent_role=agent.role,
                      data={"by": chosen.by, "reason": chosen.reason})
            self._start(dispatch, agent)

    def _settle(self, finished: asyncio.Task[TaskOutput]) -> None:
        dispatch = self.pending.pop(finished)
        task = self.graph.nodes[dispatch.task].task
        chosen = self.assigned.pop(dispatch.key, None)
        role = chosen.agent if chosen is not None else role_of(self.agent_for(task))
        if chosen is not None:
            self.loads[chosen.agent] -= 1
        started = self.ready_at.pop(dispatch.key, time.time())
        try:
            output = finished.result()
        except (asyncio.CancelledError, _NotDispatched):
            return
        except BaseException as exc:
            cause = getattr(exc, "cause", None) or exc
            self.emit("task_finished", task=dispatch.task, agent_role=role, status="failed",
                      outcome=type(cause).__name__, duration_s=time.time() - started,
                      data={"error": str(cause)[:500]})
            self._calls(dispatch.task, role, getattr(cause, "attempt_log", []))
            self._spent(getattr(cause, "attempt_log", []))
            self._check_budget()
            self.running_on.pop(dispatch.task, None)
            self._launch(self._claim(dispatch.task, self.scheduler.failed(
                dispatch.task, cause, visit=dispatch.visit)))
            self._gauges()
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
        # Recorded once, durably, before anything downstream of it is dispatched.
        if dispatch.iteration is not None:
            if self.journal is not None:
                self.journal.iteration_done(dispatch.task, dispatch.visit, dispatch.iteration,
                                            output)
            new = self.scheduler.iteration_completed(dispatch.task, dispatch.iteration, output,
                                                     visit=dispatch.visit)
            if self.journal is not None and self.scheduler.state[dispatch.task] == "completed":
                self.journal.task_done(dispatch.task, dispatch.visit,
                                       self.scheduler.outputs[dispatch.task])
        else:
            if self.journal is not None:
                self.journal.task_done(dispatch.task, dispatch.visit, output)
            if "decision" in meta:
                self.emit("decision", task=dispatch.task, data={"route": meta["decision"]})
            new = self.scheduler.completed(dispatch.task, output)
        self._check_budget()
        if dispatch.iteration is None:
            self.running_on.pop(dispatch.task, None)
            new = self._claim(dispatch.task, new, output)
        self._launch(new)
        # Not after each loop iteration: only a finished task changes what others wait on.
        if self.chaining and (dispatch.iteration is None or
                              self.scheduler.state[dispatch.task] == "completed"):
            self._hand_off_waiting_on(dispatch.task)
        self._gauges()

    def _check_budget(self) -> None:
        spec = self.spec
        over = []
        if spec.budget_tokens is not None and self.tokens >= spec.budget_tokens:
            over.append(f"{self.tokens} tokens used of a budget of {spec.budget_tokens}")
        if spec.budget_usd is not None and self.cost >= spec.budget_usd:
            over.append(f"${self.cost:.4f} spent of a budget of ${spec.budget_usd}")
        if over and self.budget_error is None:
            self.budget_error = BudgetExceededError(
                f"run {spec.run_id} stopped dispatching: " + "; ".join(over) +
                " (in-flight tasks finished; completed results are kept)")

    def _gauges(self, force: bool = False) -> None:
        # Counting is O(tasks); gauges are shipped at most every 0.1 s anyway.
        now = time.time()
        if not force and now - self.gauges_counted < _GAUGE_INTERVAL:
            return
        self.gauges_counted = now
        states = self.scheduler.state
        waiting = sum(1 for s in states.values() if s == "waiting")
        queued = sum(p.waiters for p in self.pools.pools.values()) if self.pools else 0
        self.emit("scheduler", data={"running": len(self.pending) - queued, "ready": queued +
                                     len(self.manager_queue), "waiting": waiting})

    def _calls(self, task: str, role: str | None, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            outcome = call.get("outcome")
            self.emit("llm_call", task=task, agent_role=role, model=call.get("model"),
                      outcome=outcome, duration_s=call.get("duration_s"),
                      tokens_prompt=call.get("prompt_tokens", 0),
                      tokens_completion=call.get("completion_tokens", 0),
                      cost_usd=call.get("cost_usd", 0.0))
            if outcome != "success":
                self.emit("attempt_failed", task=task, agent_role=role, outcome=outcome)

    def _account(self, dispatch: Dispatch, role: str | None, meta: dict[str, Any]) -> None:
        self._calls(dispatch.task, role, meta.get("llm_calls", []))
        if meta.get("retry_count"):
            self.emit("retry", task=dispatch.task, agent_role=role,
                      data={"count": meta["retry_count"]})
        if meta.get("fallback"):
            self.emit("fallback", task=dispatch.task, agent_role=role)
        self._spent(meta.get("llm_calls", []))

    def _spent(self, calls: list[dict[str, Any]]) -> None:
        """What the run's budget counts: every model call, failed or not."""
        for call in calls:
            self.tokens += int(call.get("prompt_tokens", 0) or 0) + \
                int(call.get("completion_tokens", 0) or 0)
            self.cost += float(call.get("cost_usd", 0.0) or 0.0)

    async def _run_one(self, dispatch: Dispatch, assigned: Any = None) -> TaskOutput:
        task = self.graph.nodes[dispatch.task].task
        context = {name: self.scheduler.outputs[name] for name in dispatch.context}
        queued = time.time()
        meta: dict[str, Any] = {}
        clock = _TimeoutClock(task.timeout)

        def started(pool: Any, member: Any = None) -> None:
            if self.budget_error is not None:
                raise _NotDispatched(dispatch.task)
            clock.start(getattr(member, "ready", None))
            now = time.time()
            meta.setdefault("started_at", now)
            meta["pool"] = pool
            self.emit("task_started", task=dispatch.task, agent_role=pool.agent.role,
                      data={"queue_s": now - queued, "iteration": dispatch.iteration})
            self.send(pool.event(self.spec.workflow, self.spec.run_id))

        async def call(agent: Any) -> TaskOutput:
            return await self._submit(agent, dispatch, context, dispatch.inputs, started)

        async def body() -> TaskOutput:
            if task.overrides_execute():
                clock.start()
                return await self._run_override(task, dispatch, context)
            primary = assigned or self.agent_for(task)
            ttl = ttl_for(task, self.spec.cache) if self.cache is not None else None
            if ttl is None:
                return await run_agents(primary)
            key = key_for(task, primary, task_prompt(task, dispatch.inputs, context,
                                                     dispatch.missing))
            hit = await self.cache.get.remote(key)
            self.emit("cache", task=dispatch.task, outcome="hit" if hit else "miss")
            if hit is not None:
                return from_cache(hit)
            output = await run_agents(primary)
            output.metadata["cache"] = "miss"
            await self.cache.put.remote(key, output.model_dump(mode="json"), ttl)
            return output

        async def run_agents(primary: Any) -> TaskOutput:
            if task.agent is None and primary is not None:
                # Tasks without an agent run on the default agent; fallback still applies.
                try:
                    return await call(primary)
                except Exception:
                    if task.fallback_agent is None:
                        raise
                    return await call(task.fallback_agent)
            return await run_with_fallback(task, call)

        def breaker_state(name: str, state: str) -> None:
            self.emit("breaker", task=dispatch.task, data={"state": state, "breaker": name})

        try:
            output = await clock.run(breaker_guard(task, body, on_state=breaker_state))
        except asyncio.TimeoutError:
            raise TaskTimeoutError(f"task '{dispatch.task}' exceeded its timeout of "
                                   f"{task.timeout} s", task=dispatch.task) from None
        finally:
            if "pool" in meta:  # the pool's load after this task left it
                self.send(meta.pop("pool").event(self.spec.workflow, self.spec.run_id))
        output.metadata["queue_s"] = max(0.0, meta.get("started_at", queued) - queued)
        output.metadata["started_at"] = meta.get("started_at", queued)
        return output

    async def _submit(self, agent: Any, dispatch: Dispatch, context: dict[str, TaskOutput],
                      inputs: dict[str, Any] | None,
                      started: Callable[[Any, Any], None] | None = None) -> TaskOutput:
        """One task's attempts with one agent, on that agent's pool (or the hand-off of
        this very dispatch, already running behind its predecessor)."""
        pool = self.pools.pool_for(agent)
        on_start = (lambda member: started(pool, member)) if started else None
        if self.handed and dispatch.task in self.running_on:
            # Sent before (this is a fallback agent's turn, or an override's second call):
            # followers of the first send hold slots this one may need; they cannot follow.
            for name in [n for n, h in self.handed.items() if h.after == dispatch.task]:
                self._drop_handed(name)
        token = on_sent = None
        if self.chaining and dispatch.iteration is None:
            token = self._token(dispatch.task, dispatch.visit)

            def on_sent(where: Any, member: Any, sent_token: str) -> None:
                self._sent(dispatch, where, member, sent_token)

        handed = self.handed.pop(dispatch.task, None)
        if handed is not None and not (handed.claimed and handed.pool is pool and
                                       handed.dispatch == dispatch and inputs is None):
            self._cancel_handed(handed)
        elif handed is not None:
            output = await pool.adopt(handed.member, handed.ref, on_start, handed.token,
                                      on_sent)
            if output is not None:
                return output  # type: ignore[no-any-return]
            # It did not run there after all: whatever was queued behind it cannot run.
            for name in [n for n, h in self.handed.items() if h.after_token == handed.token]:
                self._drop_handed(name)
            self.running_on.pop(dispatch.task, None)
            on_start = None  # the task has started already, as far as events go
        return await pool.submit(  # type: ignore[no-any-return]
            self.members_key, dispatch.task, inputs, context, dispatch.missing,
            dispatch.iteration, on_start=on_start, token=token, on_sent=on_sent)

    # -- hand-offs ---------------------------------------------------------------------
    # When a task B waits on nothing but a running task A, B is queued in the member
    # that runs A and starts there the moment A succeeds: a chain step then costs no
    # Supervisor round trip (~3-4 ms here). The Supervisor still decides: when A
    # completes, the dispatch the scheduler makes for B must equal the one predicted
    # (else the hand-off is cancelled), and B's output is recorded as any other.
    # Not used where the Supervisor must act between A and B: checkpoints (A is durable
    # before B starts), budgets, caching, breakers, the hierarchical manager, overrides.

    def _token(self, name: str, visit: int) -> str:
        # What a member knows one send of a task by (unique in the run).
        self.tokens_issued += 1
        return f"{name}#{visit}#{self.tokens_issued}"

    def _chaining_allowed(self) -> bool:
        spec = self.spec
        return (os.environ.get("RAY_ORCH_HANDOFF", "1") != "0" and self.journal is None
                and self.cache is None and self.manager is None
                and spec.budget_tokens is None and spec.budget_usd is None)

    def _sent(self, dispatch: Dispatch, pool: Any, member: Any, token: str) -> None:
        # Sent again (its member died): followers of the old member's run cannot follow.
        for name in [n for n, h in self.handed.items()
                     if h.after == dispatch.task and h.after_member is not member]:
            self._drop_handed(name)
        self.running_on[dispatch.task] = (pool, member, token)
        for name in self.scheduler.dependants.get(dispatch.task, []):
            self._hand_off(name, dispatch.task)

    def _hand_off_waiting_on(self, done: str) -> None:
        # ``done`` may have been the last input but one of a task whose other input runs.
        for name in self.scheduler.dependants.get(done, []):
            if self.scheduler.state.get(name) != "waiting" or name in self.handed:
                continue
            node = self.graph.nodes[name]
            open_inputs = {u for u in node.deps + node.after
                           if self.scheduler.state[u] != "completed"}
            if len(open_inputs) == 1:
                self._hand_off(name, open_inputs.pop())

    def _hand_off(self, name: str, after: str) -> None:
        if name in self.handed or after not in self.running_on:
            return
        predicted = self.scheduler.follower(name, after)
        if predicted is None:
            return
        from ._breaker import breaker_for

        task = self.graph.nodes[name].task
        after_pool, after_member, after_token = self.running_on[after]
        agent = self.agent_for(task)
        if agent is None or task.overrides_execute() or breaker_for(task) is not None:
            return
        # A follower waits in a slot of its own agent's pool (its max_concurrency holds):
        # the same agent's, in the member running its predecessor; another agent's, in a
        # member of that agent's pool, to which the predecessor's member sends the output.
        pool = self.pools.pool_for(agent)
        if pool is after_pool:
            member = after_member if pool.reserve(after_member) else None
        else:
            member = pool.reserve_any()
        if member is None:
            return
        token = self._token(name, predicted.visit)
        context = {d: self.scheduler.outputs[d] for d in predicted.context if d != after}
        ref, carried = pool.hand_off(member, self.members_key, after_token, pool.key, name,
                                     context, token, predicted.context)
        if member is not after_member:
            after_member.handle.forward.remote(self.members_key, after_token, member.handle)
        self.handed[name] = _Handed(dispatch=predicted, after=after, after_token=after_token,
                                    after_member=after_member, pool=pool, member=member,
                                    ref=ref, token=token, carried=carried)

    def _claim(self, settled: str, dispatches: list[Dispatch],
               output: TaskOutput | None = None) -> list[Dispatch]:
        """Mark the hand-offs behind ``settled`` that match what the scheduler dispatches
        now; cancel the others (their predecessor failed, or the run took another way).
        ``output``: what ``settled`` returned, when it succeeded."""
        if not self.handed:
            return dispatches
        for dispatch in dispatches:
            handed = self.handed.get(dispatch.task)
            if handed is not None and handed.after == settled and handed.dispatch == dispatch:
                handed.claimed = True
                if handed.member is not handed.after_member:
                    # Also from here: the predecessor's member may die before it forwards.
                    handed.member.handle.deliver.remote(
                        self.members_key, handed.after_token,
                        None if output is None else (settled, output))
        for name in [n for n, h in self.handed.items() if h.after == settled and not h.claimed]:
            self._drop_handed(name)
        return dispatches

    def _drop_handed(self, name: str) -> None:
        self._cancel_handed(self.handed.pop(name))

    @staticmethod
    def _cancel_handed(handed: _Handed) -> None:
        import ray

        ray.cancel(handed.ref)
        if handed.carried:  # it may not have run: the member's other calls need the bind
            handed.pool._bind_again(handed.member)
        handed.pool.unreserve(handed.member)

    async def _run_override(self, task: Task, dispatch: Dispatch,
                            context: dict[str, TaskOutput]) -> TaskOutput:
        """A user's ``execute()`` override runs here, in a thread of the Supervisor, on the
        one Task object of this run (so state like failure counts persists between
        visits); its ``super().execute()`` hands the attempt to the pools."""
        loop = asyncio.get_running_loop()
        task._context_outputs = context
        task._missing_context = dict(dispatch.missing)
        inner_calls: list[concurrent.futures.Future[TaskOutput]] = []

        def bridge(inner: Task, inputs: dict[str, Any] | None) -> TaskOutput:
            async def go() -> TaskOutput:
                async def call(agent: Any) -> TaskOutput:
                    return await self._submit(
                        agent, dispatch, context,
                        inputs if inputs is not None else dispatch.inputs)

                return await run_with_fallback(inner, call)

            future = asyncio.run_coroutine_threadsafe(go(), loop)
            inner_calls.append(future)
            return future.result()

        def target() -> TaskOutput:
            _bridge.call = bridge
            try:
                # The guide's subclasses define execute(self) without inputs; the bridge
                # hands a loop row's inputs to the attempt either way.
                if dispatch.inputs is None or not _takes_inputs(task.execute):
                    return task.execute()  # type: ignore[no-any-return]
                return task.execute(dispatch.inputs)  # type: ignore[no-any-return]
            finally:
                _bridge.call = None

        if self.override_threads is None:
            # Its own threads: the loop's default executor has min(32, cpus + 4), which
            # would cap a loop of overrides at 6 attempts at once on this machine.
            self.override_threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=256, thread_name_prefix="ray-orch-execute")
        try:
            result = await loop.run_in_executor(self.override_threads, target)
        except asyncio.CancelledError:
            for future in inner_calls:  # a timeout or cancel stops the attempts too
                future.cancel()
            raise
        if not isinstance(result, TaskOutput):
            raise RunError(f"task '{dispatch.task}': execute() returned "
                           f"{type(result).__name__}, expected TaskOutput", task=dispatch.task)
        return result


_GAUGES = ("pool", "scheduler")
_GAUGE_INTERVAL = 0.1


@dataclass(kw_only=True, eq=False)
class _Handed:
    """A follower queued behind its predecessor (see ``Run._hand_off``)."""

    dispatch: Dispatch
    after: str
    after_token: str
    after_member: Any  # the member running the predecessor
    pool: Any
    member: Any
    ref: Any
    token: str
    carried: bool = False  # the call carries the member's bind
    claimed: bool = False


class _NotDispatched(Exception):
    """A task that was ready but not started, because the run's budget was spent."""


# How long a task's timeout waits for a new member to come up before it starts anyway.
_STARTUP_ALLOWANCE = 60.0


class _TimeoutClock:
    """A task's timeout, counted from when a member takes the task and is up (time
    spent waiting for a free slot, a member's process start and its litellm import do
    not count); ``start`` again (a fallback agent, a retry elsewhere) changes nothing."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = False
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None
        self.job: asyncio.Future[Any] | None = None

    def start(self, ready: asyncio.Future[Any] | None = None) -> None:
        if not self.seconds or self.started:
            return
        self.started = True
        if ready is None or ready.done():
            self._arm()
        else:
            # A member that never comes up (resources no node has) must not hold the
            # task forever: its start-up may take this long at most.
            cap = asyncio.get_running_loop().call_later(_STARTUP_ALLOWANCE, self._arm)

            def up(_: asyncio.Future[Any]) -> None:
                cap.cancel()
                self._arm()

            ready.add_done_callback(up)

    def _arm(self) -> None:
        if self.timer is None and self.seconds and (self.job is None or not self.job.done()):
            self.timer = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.job is not None:
            self.job.cancel()

    async def run(self, coro: Awaitable[TaskOutput]) -> TaskOutput:
        """Await ``coro``; raises ``asyncio.TimeoutError`` when the clock ran out."""
        if not self.seconds:
            return await coro
        self.job = asyncio.ensure_future(coro)
        if self.expired:
            self.job.cancel()
        try:
            await asyncio.wait({self.job})  # a cancel of this task lands here, not in job
        except asyncio.CancelledError:
            self.job.cancel()
            await asyncio.wait({self.job})  # let it wind down (it cancels remote work)
            raise
        finally:
            if self.timer is not None:
                self.timer.cancel()
        if self.job.cancelled() and self.expired:
            raise asyncio.TimeoutError
        return self.job.result()


def _takes_inputs(method: Any) -> bool:
    """Whether a bound ``execute`` accepts a positional ``inputs`` argument."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it can travel to the driver (to be chained there), else a RuntimeError
    that names it."""
    import ray.cloudpickle as pickle

    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
