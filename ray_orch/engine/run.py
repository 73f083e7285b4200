"""One run of a process, as the Supervisor actor executes it.

``Run`` is the loop: the scheduler decides what is ready, the pools execute it, the
retry/fallback/breaker policy wraps each task, and what ends is settled. Everything else
is a part of its own, which ``Run`` only calls:

- ``hooks.py``: listeners of finished dispatches (journal, budget, cache, events);
- ``reporting.py``: events to the driver and the metrics sink;
- ``handoff.py``: a chain's next task waiting in a member;
- ``hierarchy.py``: the manager's assignments;
- ``overrides.py``: users' ``execute()`` overrides; ``timeouts.py``: task timeouts.

It reaches the cluster only through ``Services`` (``ports.py``), passed in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from ray_orch.core import shared
from ray_orch.core.approvals import Edit, Reject, RunPaused
from ray_orch.core.errors import RunCancelledError, RunError, TaskFailedError, TaskTimeoutError
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.core.prompt import task_prompt
from ray_orch.engine.approvals import Approvals, edited, record
from ray_orch.engine.dispatch import FinishedBeforeCancel, PoolSet
from ray_orch.engine.graph import Graph, build_graph
from ray_orch.engine.handoff import HandOffs, chaining_allowed
from ray_orch.engine.hierarchy import Hierarchy
from ray_orch.engine.hooks import (
    BudgetHook,
    CacheHook,
    EventsHook,
    Finished,
    JournalHook,
    RunHook,
)
from ray_orch.engine.messages import Question, RunOptions
from ray_orch.engine.overrides import Overrides
from ray_orch.engine.ports import Services
from ray_orch.engine.replies import Replies
from ray_orch.engine.reporting import Reporter
from ray_orch.engine.runspec import RunResult, RunSpec
from ray_orch.engine.scheduler import Dispatch, Scheduler
from ray_orch.engine.timeouts import TimeoutClock
from ray_orch.policy.agent import role_of
from ray_orch.policy.attempt import run_with_fallback
from ray_orch.policy.breaker import breaker_for, breaker_guard
from ray_orch.policy.caching import from_cache, key_for, ttl_for
from ray_orch.policy.task import Task
from ray_orch.store.approvals import PauseStore
from ray_orch.store.journal import Journal
from ray_orch.tools.journal import ToolJournalRef

__all__ = ["Run", "RunResult", "RunSpec"]


class Run:
    """Executes one ``RunSpec`` with the given ``Services``; ``emit`` receives every
    event as it happens."""

    def __init__(self, spec: RunSpec, emit: Callable[[Event], None], services: Services,
                 hooks: list[RunHook] | None = None) -> None:
        self.spec = spec
        self.services = services
        self.graph: Graph = spec.graph or build_graph(
            spec.tasks, spec.mode, has_default_agent=spec.default_agent is not None,
            needs_agents=spec.mode != "hierarchical")
        self.tool_journal: ToolJournalRef | None = None
        journal = self._open_journal()
        # What members know this run by: unique to this execution, since a resumed run
        # keeps its run id and a member must tell a late call of the old one apart.
        self.members_key = f"{spec.run_id}/{uuid.uuid4().hex[:8]}"
        self.reporter = Reporter(workflow=spec.workflow, run_id=spec.run_id, deliver=emit,
                                 sink=services.metrics, streaming=spec.stream)
        self.emit = self.reporter.emit
        self.approvals.emit = self.emit
        self.budget = BudgetHook(run_id=spec.run_id, tokens=spec.budget_tokens,
                                 usd=spec.budget_usd)
        caches = spec.cache or any(t.cache_ttl for t in spec.tasks)
        self.cache = CacheHook(services.cache) if caches and services.cache else None
        wanted = {n for n, node in self.graph.nodes.items()
                  if getattr(node.task, "_send_output", False)}
        self.hooks: list[RunHook] = [EventsHook(self.reporter, outputs_for=wanted), self.budget]
        self.hooks += [JournalHook(journal)] if journal is not None else []
        self.hooks += [self.cache] if self.cache is not None else []
        self.hooks += hooks or []
        self.pending: dict[asyncio.Task[TaskOutput], Dispatch] = {}
        self.finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self.ready_at: dict[tuple[str, int, int | None], float] = {}
        self.pools: PoolSet | None = None
        self.overrides = Overrides()
        self.hierarchy: Hierarchy | None = None
        self.cancelled = False
        self.winding_down = False
        self.late: list[tuple[Dispatch, TaskOutput]] = []
        """Outputs of attempts that had finished when the wind-down cancelled them."""
        self.released = False  # ``release`` was asked (see there)
        self.handoffs = HandOffs(
            enabled=False, graph=self.graph, scheduler=self.scheduler,
            remote=services.remote, members_key=self.members_key, pools=lambda: self.pools,
            agent_for=self.agent_for,
            can_follow=lambda t: not t.overrides_execute() and breaker_for(t) is None
            and self._chains(t))

    def _open_journal(self) -> Journal | None:
        spec = self.spec
        restored: dict[tuple[str, int], TaskOutput] = {}
        restored_iterations: dict[tuple[str, int], dict[int, TaskOutput]] = {}
        journal = None
        store = self.services.store
        pauses = PauseStore(store) if store is not None and (
            spec.approvals is not None or spec.resume) else None
        self.approvals = Approvals(mode=spec.approvals, run_id=spec.run_id,  # type: ignore[arg-type]
                                   store=pauses)
        if store is not None:
            journal = Journal(store, run_id=spec.run_id,
                              workflow=spec.workflow, definition=self.graph.definition(),
                              resume=spec.resume, allow_drift=spec.allow_drift)
            spec.run_id = journal.run_id
            loops = [n for n, node in self.graph.nodes.items() if node.task.task_type == "loop"]
            restored, restored_iterations = journal.restored(loops, spec.max_visits, tasks={
                name: node.task for name, node in self.graph.nodes.items()})
            self.approvals.run_id = journal.run_id
            if spec.resume:
                def restore(task: str, visit: int, output: TaskOutput) -> None:
                    restored[(task, visit)] = output
                    journal.task_done(task, visit, output)  # approved: final, durably

                self.approvals.resume(spec.answers, restore, {
                    n: node.task for n, node in self.graph.nodes.items()})
            # Tool calls are journaled where they run (the members), in the same store.
            self.tool_journal = ToolJournalRef(store=store, run_id=spec.run_id)
        self.scheduler = Scheduler(self.graph, max_visits=spec.max_visits,
                                   max_steps=spec.max_steps,
                                   on_failure=spec.on_failure,  # type: ignore[arg-type]
                                   restored=restored, restored_iterations=restored_iterations)
        return journal

    def _chains(self, task: Task) -> bool:
        """Whether ``task`` may be in a hand-off (follow, or lead). With a journal, a
        member records what it hands on: not a timed task's output, which the
        Supervisor may still fail."""
        return self.tool_journal is None or not task.timeout

    def agent_for(self, task: Task) -> Any:
        return task.agent if task.agent is not None else self.spec.default_agent

    # -- the run -----------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end (or the first unhandled failure) and return the result."""
        # What runs here (breakers, decisions) shares the run's services too.
        with shared.using(self.services.shared):
            return await self._execute()

    async def _execute(self) -> RunResult:
        self.started = time.time()
        internal: BaseException | None = None
        try:
            await self._open()
            self._launch(self.scheduler.start())
            while self.pending or self.approvals.waiting or (
                    self.hierarchy is not None and self.hierarchy.busy):
                # Jobs report themselves here when done: O(1) a completion, where
                # asyncio.wait over every pending job would be O(pending) (quadratic
                # for a 10,000-item fan-out).
                done = [await self.finished.get()]
                while not self.finished.empty():
                    done.append(self.finished.get_nowait())
                for job in done:
                    if self.hierarchy is not None and job is self.hierarchy.job:
                        self.hierarchy.done(job)
                    elif job in self.approvals.waiting:
                        self._answered(job)
                    elif job in self.pending:
                        self._settle(job)  # type: ignore[arg-type]
                if self.scheduler.abort is not None:
                    break
        except asyncio.CancelledError:
            self.cancelled = True
        except Exception as exc:  # an engine fault still ends the run cleanly, with a result
            internal = exc
        finally:
            await self._wind_down()
        return await self._result(internal)

    async def _open(self) -> None:
        spec = self.spec
        resumed = sorted({k[0] for k in self.scheduler.restored})
        units, pending = self.graph.work_units()
        self.emit("run_started", data={"tasks": len(self.graph.order), "mode": spec.mode,
                                       "units": units, "loops_pending": pending,
                                       "metrics_url": self.services.metrics_url,
                                       "metrics_error": self.services.metrics_error,
                                       "resumed": resumed})
        agents = self._all_agents()
        if spec.mode == "hierarchical":
            self.hierarchy = self._hierarchy()
            agents.append(self.hierarchy.agent)
        options = RunOptions(
            listener=self.services.listener, tokens=spec.tokens, telemetry=spec.telemetry,
            trace_context=spec.trace_context, approvals=spec.approvals == "inline",
            tool_journal=self.tool_journal, route_descriptions=self.graph.route_descriptions,
            memory=spec.memory, shared=self.services.shared,
            reply_line=line.name if (line := self.services.line) is not None else None)
        self.pools = PoolSet(self.services.registry, self.members_key, options=options,
                             remote=self.services.remote, kept=self.services.kept,
                             lessee=self.services.lessee,
                             replies=None if line is None else Replies(
                                 line=line, run_id=self.members_key))
        tasks = {name: node.task for name, node in self.graph.nodes.items()}
        await self.pools.open(agents, tasks, bind_now=any(t.timeout for t in tasks.values()),
                              shipped=spec.definitions, loops=self.graph.loop_sizes())
        self.handoffs.enabled = not any(t.human_input for t in tasks.values()) and chaining_allowed(
            cache=self.cache is not None, manager=self.hierarchy is not None,
            budget=spec.budget_tokens is not None or spec.budget_usd is not None)

    async def _wind_down(self) -> None:
        jobs: list[asyncio.Future[Any]] = [*self.pending]
        if self.hierarchy is not None and self.hierarchy.job is not None:
            jobs.append(self.hierarchy.job)
        jobs += self.approvals.unanswered()  # kept in the store: a resumed run asks again
        self.winding_down = True
        if self.pools is not None:
            self.pools.keep_late_replies()
        for job in jobs:
            job.cancel()
        self.handoffs.drop_all()
        self.handoffs.enabled = False
        await asyncio.gather(*jobs, return_exceptions=True)
        # What was done before the cancel reached it is kept: a job that ended but was
        # not settled yet, or an attempt whose member had finished it.
        late = [(dispatch, job.result()) for job, dispatch in self.pending.items()
                if job.done() and not job.cancelled() and job.exception() is None]
        try:  # a record that fails (the store) still lets the run give its members back
            for dispatch, output in late + self.late:
                if self.scheduler.state.get(dispatch.task) == "running":
                    self._finished_late(dispatch, output)
        finally:
            if self.hierarchy is not None:
                self.hierarchy.job = None
            if self.pools is not None:
                await self.pools.close(defer=self.services.defer_release and not self.released)
            self.overrides.close()

    def release(self) -> None:
        """Unbind and give back the run's members, if that waited (``defer_release``);
        asked before the run has closed its pools (its follower left early), they are
        released as they close."""
        self.released = True
        if self.pools is not None:
            self.pools.release()

    async def _result(self, internal: BaseException | None) -> RunResult:
        spec = self.spec
        error: BaseException | None = None
        if self.cancelled:
            error = RunCancelledError(f"run {spec.run_id} was cancelled")
        elif internal is not None:
            error = RunError(f"run {spec.run_id} failed: {type(internal).__name__}: {internal}",
                             run_id=spec.run_id, original=internal)
        elif self.scheduler.abort is not None:
            error = self.scheduler.abort
        elif self.budget.error is not None:
            error = self.budget.error
        elif self.approvals.paused:
            asked = ", ".join(f"{r.id} ({r.task})" for r in self.approvals.paused)
            error = RunPaused(f"run {spec.run_id} waits for approval: {asked}; continue it "
                              f"with workflow(resume={spec.run_id!r}, answers={{...}}) or "
                              f"ray-orch approve", run_id=spec.run_id,
                              requests=list(self.approvals.paused))
        statuses = self.scheduler.statuses()
        if self.cancelled or error is not None:
            statuses = {n: ("failed" if s == "running" and n in self.scheduler.errors else
                            "pending" if s in ("running", "pending") else s)
                        for n, s in statuses.items()}
        for request in self.approvals.paused:
            statuses[request.task] = "paused"
        self._gauges(force=True)
        self.reporter.flush_gauges()
        status = ("cancelled" if self.cancelled else "paused" if isinstance(error, RunPaused)
                  else "failed" if error else "completed")
        for hook in self.hooks:
            await hook.settle()
        self.emit("run_finished", status=status, duration_s=time.time() - self.started)
        self.reporter.close()
        for hook in self.hooks:
            hook.run_finished(status)
        return RunResult(run_id=spec.run_id, metrics_url=self.services.metrics_url,
                         outputs=dict(self.scheduler.outputs), statuses=statuses,
                         errors={n: str(e) for n, e in self.scheduler.errors.items()},
                         skip_reasons=dict(self.scheduler.skip_reasons), error=error,
                         resumed=list(self.scheduler.resumed),
                         activated_by=dict(self.scheduler.activator))

    def _all_agents(self) -> list[Any]:
        agents = list(self.spec.agents) + [a for t in self.spec.tasks
                                           for a in (t.agent, t.fallback_agent) if a is not None]
        if self.spec.default_agent is not None and any(t.agent is None for t in self.spec.tasks):
            agents.append(self.spec.default_agent)
        # Agents, and any object with chat(prompt) (the Task docstring's adapters).
        return [a for a in agents if hasattr(a, "key") or callable(getattr(a, "chat", None))]

    def _hierarchy(self) -> Hierarchy:
        async def ask(agent: Any, prompt: str, schema: Any) -> str:
            assert self.pools is not None
            pool = self.pools.pool_for(agent)
            member = min(pool.members, key=lambda m: m.in_flight)
            return await member.handle.ask.remote(Question(  # type: ignore[no-any-return]
                agent_key=agent.key(), prompt=prompt, schema=schema.model_json_schema(),
                run_id=self.members_key, bind=pool.bind_for(member)))

        hierarchy = Hierarchy(
            manager_llm=self.spec.manager,
            workers=[a for a in self.spec.agents if isinstance(getattr(a, "role", None), str)],
            max_calls=self.spec.max_manager_calls or max(10, 4 * len(self.graph.order)),
            ask=ask, start=self._start, emit=self.emit,
            describe=lambda name: self.graph.nodes[name].task.description)
        hierarchy.on_done = self.finished.put_nowait
        return hierarchy

    def _launch(self, dispatches: list[Dispatch]) -> None:
        if self.budget.error is not None or self.winding_down:
            # Budget reached: nothing new starts; in-flight work finishes on its own.
            return
        now = time.time()
        for dispatch in dispatches:
            self.ready_at[dispatch.key] = now
            task = self.graph.nodes[dispatch.task].task
            if self.hierarchy is not None and task.agent is None:
                self.emit("task_ready", task=dispatch.task)
                self.hierarchy.wait(dispatch)
                continue
            self.emit("task_ready", task=dispatch.task, agent_role=role_of(self.agent_for(task)))
            self._start(dispatch)
        if self.hierarchy is not None:
            self.hierarchy.kick()

    def _start(self, dispatch: Dispatch, agent: Any = None) -> None:
        job = asyncio.ensure_future(self._run_one(dispatch, agent))
        self.pending[job] = dispatch
        job.add_done_callback(self.finished.put_nowait)

    # -- what ended --------------------------------------------------------------------

    def _settle(self, job: asyncio.Task[TaskOutput]) -> None:
        dispatch = self.pending.pop(job)
        task = self.graph.nodes[dispatch.task].task
        chosen = self.hierarchy.settled(dispatch) if self.hierarchy is not None else None
        role = chosen.agent if chosen is not None else role_of(self.agent_for(task))
        started = self.ready_at.pop(dispatch.key, time.time())
        try:
            output = job.result()
        except (asyncio.CancelledError, _NotDispatched):
            return
        except BaseException as exc:
            cause = getattr(exc, "cause", None) or exc
            for hook in self.hooks:
                hook.dispatch_finished(Finished(dispatch=dispatch, role=role, error=cause,
                                                started=started))
            self._launch(self.handoffs.claim(dispatch.task, self.scheduler.failed(
                dispatch.task, cause, visit=dispatch.visit)))
            self._gauges()
            return
        output.task_id = dispatch.task
        if chosen is not None and self.hierarchy is not None:
            output.metadata.update({"assigned_by": chosen.by, "assigned_agent": chosen.agent,
                                    "assignment_reason": chosen.reason,
                                    "manager_calls": self.hierarchy.manager.calls})
        for hook in self.hooks:
            hook.dispatch_finished(Finished(dispatch=dispatch, role=role, output=output))
        if self.approvals.needs(task, dispatch, output):
            # It waits for a person: inline, as a job of the run; paused, until resumed.
            answer = self.approvals.ask(dispatch, role, output)
            if answer is not None:
                answer.add_done_callback(self.finished.put_nowait)
            self._gauges()
            return
        self._accept(dispatch, output)

    def _finished_late(self, dispatch: Dispatch, output: TaskOutput) -> None:
        """Record the output of an attempt that finished before the wind-down's cancel
        reached it; nothing is launched after it (``_launch`` is off by then)."""
        task = self.graph.nodes[dispatch.task].task
        if self.approvals.needs(task, dispatch, output):
            return  # a person would have to answer first: it runs again on resume
        output.task_id = dispatch.task
        for hook in self.hooks:
            hook.dispatch_finished(Finished(
                dispatch=dispatch, role=role_of(self.agent_for(task)), output=output,
                started=self.ready_at.pop(dispatch.key, time.time())))
        self._accept(dispatch, output)

    def _accept(self, dispatch: Dispatch, output: TaskOutput) -> None:
        """A dispatch's output stands: record it, route, and launch what became ready."""
        # Recorded durably before anything downstream of it is dispatched (a follower
        # handed off behind it acts only once its member recorded it: handoff.py).
        if dispatch.iteration is not None:
            for hook in self.hooks:
                hook.iteration_completed(dispatch.task, dispatch.visit, dispatch.iteration,
                                         output)
            new = self.scheduler.iteration_completed(dispatch.task, dispatch.iteration, output,
                                                     visit=dispatch.visit)
            if self.scheduler.state[dispatch.task] == "completed":
                for hook in self.hooks:
                    hook.task_completed(dispatch.task, dispatch.visit,
                                        self.scheduler.outputs[dispatch.task])
        else:
            for hook in self.hooks:
                hook.task_completed(dispatch.task, dispatch.visit, output)
            new = self.handoffs.claim(dispatch.task,
                                      self.scheduler.completed(dispatch.task, output), output)
        self._launch(new)
        # Not after each loop iteration: only a finished task changes what others wait on.
        if dispatch.iteration is None or self.scheduler.state[dispatch.task] == "completed":
            self.handoffs.waiting_on(dispatch.task)
        self._gauges()

    def _answered(self, job: asyncio.Future[Any]) -> None:
        """A person answered an inline request: the output stands (approved, edited), or
        the task is asked again with the reason, or fails."""
        waiting = self.approvals.waiting.pop(job)
        if job.cancelled():
            return
        answer = job.result()
        name, task = waiting.dispatch.task, self.graph.nodes[waiting.dispatch.task].task
        if isinstance(answer, Reject):
            self.approvals.rejections[name] += 1
            if task.on_reject == "retry" and self.approvals.rejections[name] <= task.max_retries:
                self.approvals.feedback[name] = answer.reason
                self._start(waiting.dispatch)  # asked again, hearing why
                return
            error = TaskFailedError(f"task '{name}': its output was rejected: {answer.reason}",
                                    task=name)
            self._launch(self.handoffs.claim(name, self.scheduler.failed(
                name, error, visit=waiting.dispatch.visit)))
            return
        output = edited(task, waiting.output, answer) if isinstance(answer, Edit) \
            else waiting.output
        output.metadata["approval"] = record(waiting.request, answer)
        self._accept(waiting.dispatch, output)

    def _gauges(self, force: bool = False) -> None:
        # Counting is O(tasks); gauges are shipped at most every 0.1 s anyway.
        if not self.reporter.gauge_due(force):
            return
        waiting = sum(1 for s in self.scheduler.state.values() if s == "waiting")
        queued = sum(p.waiters for p in self.pools.pools.values()) if self.pools else 0
        manager_queue = len(self.hierarchy.queue) if self.hierarchy is not None else 0
        self.emit("scheduler", data={"running": len(self.pending) - queued,
                                     "ready": queued + manager_queue, "waiting": waiting})

    # -- one dispatch ------------------------------------------------------------------

    async def _run_one(self, dispatch: Dispatch, assigned: Any = None) -> TaskOutput:
        task = self.graph.nodes[dispatch.task].task
        context = {name: self.scheduler.outputs[name] for name in dispatch.context}
        queued = time.time()
        meta: dict[str, Any] = {}
        clock = TimeoutClock(task.timeout)

        def started(pool: Any, member: Any = None) -> None:
            if self.budget.error is not None:
                raise _NotDispatched(dispatch.task)
            clock.start(getattr(member, "ready", None))
            now = time.time()
            meta.setdefault("started_at", now)
            meta["pool"] = pool
            self.emit("task_started", task=dispatch.task, agent_role=pool.agent.role,
                      data={"queue_s": now - queued, "iteration": dispatch.iteration,
                            "of": dispatch.of})
            self.reporter.send(pool.event(self.spec.workflow, self.spec.run_id))

        async def call(agent: Any) -> TaskOutput:
            return await self._submit(agent, dispatch, context, dispatch.inputs, started)

        async def body() -> TaskOutput:
            again = self.approvals.again.get((dispatch.task, dispatch.visit))
            if again is not None and again.output is not None:
                return again.output  # still waiting for its answer: not run again
            if dispatch.task in self.approvals.fail:
                raise TaskFailedError(f"task '{dispatch.task}': its output was rejected: "
                                      f"{self.approvals.fail.pop(dispatch.task)}",
                                      task=dispatch.task)
            if task.overrides_execute():
                clock.start()
                return await self.overrides.run(
                    task, dispatch, context,
                    lambda agent, inputs: self._submit(
                        agent, dispatch, context,
                        inputs if inputs is not None else dispatch.inputs, inner=True))
            primary = assigned or self.agent_for(task)
            hit = await self._cached(task, dispatch, primary, context)
            return hit if hit is not None else await run_agents(primary)

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
                self.reporter.send(meta.pop("pool").event(self.spec.workflow,
                                                          self.spec.run_id))
        output.metadata["queue_s"] = max(0.0, meta.get("started_at", queued) - queued)
        output.metadata["started_at"] = meta.get("started_at", queued)
        return output

    async def _cached(self, task: Task, dispatch: Dispatch, agent: Any,
                      context: dict[str, TaskOutput]) -> TaskOutput | None:
        """The cached output of this dispatch, if the run caches it and has it; a miss
        is noted so that the output is stored when it completes (``CacheHook``)."""
        ttl = ttl_for(task, self.spec.cache) if self.cache is not None else None
        if ttl is None or self.cache is None:
            return None
        key = key_for(task, agent, task_prompt(task, dispatch.inputs, context, dispatch.missing))
        hit = await self.cache.cache.get.remote(key)
        self.emit("cache", task=dispatch.task, outcome="hit" if hit else "miss")
        if hit is not None:
            return from_cache(hit)
        self.cache.missed[dispatch.key] = (key, ttl)
        return None

    async def _submit(self, agent: Any, dispatch: Dispatch, context: dict[str, TaskOutput],
                      inputs: dict[str, Any] | None,
                      started: Callable[[Any, Any], None] | None = None, *,
                      inner: bool = False) -> TaskOutput:
        """One task's attempts with one agent, on that agent's pool (or the hand-off of
        this very dispatch, already running behind its predecessor). ``inner``: a call
        an ``execute()`` override makes (its output is not the task's: nothing follows
        it, nothing records it)."""
        assert self.pools is not None
        pool = self.pools.pool_for(agent)
        on_start = (lambda member: started(pool, member)) if started else None
        handoffs = self.handoffs
        handoffs.sending_again(dispatch.task)
        token = on_sent = None
        # A token only where a hand-off may follow: behind it, the member records the
        # output before returning it (one more write).
        if handoffs.enabled and dispatch.iteration is None and not inner and \
                handoffs.leads(dispatch.task) and self._chains(
                    self.graph.nodes[dispatch.task].task):
            token = handoffs.token(dispatch.task, dispatch.visit)

            def on_sent(where: Any, member: Any, sent_token: str) -> None:
                handoffs.sent(dispatch, where, member, sent_token)

        handed = handoffs.take(dispatch, pool, inputs)
        try:
            if handed is not None:
                output = await pool.adopt(handed.member, handed.ref, on_start, handed.token,
                                          on_sent)
                if output is not None:
                    return output
                handoffs.not_adopted(dispatch, handed)
                on_start = None  # the task has started already, as far as events go
            return await pool.submit(
                self.members_key, dispatch.task, inputs, context, dispatch.missing,
                dispatch.iteration, on_start=on_start, token=token, on_sent=on_sent,
                feedback=self.approvals.feedback.pop(dispatch.task, None))
        except FinishedBeforeCancel as late:
            if self.winding_down and not inner:  # a cancelled run keeps what was done
                self.late.append((dispatch, late.output))
            raise


class _NotDispatched(Exception):
    """A task that was ready but not started, because the run's budget was spent."""
