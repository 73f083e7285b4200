"""``AgentMember``: one member of agent pools. It runs task attempts for the agents of
the runs it serves, many at once (asyncio), and takes its side of hand-offs and batches.

A member calls models: over the lean HTTP client for OpenAI-compatible servers, through
litellm otherwise (imported only then, so an idle member stays small). A pool binds N of
them to one Agent for a run; when the run ends they go back to the registry, so the next
run (or the next test) does not pay ~0.6 s of process start and 3-5 s of litellm import
again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import os
import pickle
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray_orch.core import shared, trace
from ray_orch.core.errors import RunCancelledError
from ray_orch.core.line import Line, actor_line
from ray_orch.core.output import TaskOutput
from ray_orch.engine.handoff import token_visit
from ray_orch.engine.messages import (
    AttemptRequest,
    BatchRequest,
    Binding,
    HandOffRequest,
    Question,
    RunOptions,
    TaskRequest,
    TokenBatch,
    ToolQuestion,
)
from ray_orch.engine.starts import Starts
from ray_orch.policy.attempt import RunInputs, run_attempts
from ray_orch.store.journal import record_task
from ray_orch.tools.execute import progress_to
from ray_orch.tools.journal import predecessor_recorded, recorded

__all__ = ["AgentMember", "RunOptions", "import_lean_client"]

# Turns of the event loop a member gives a follower of an output before returning it.
_FOLLOWER_TURNS = 8


def _needs_litellm(agents: dict[str, Any]) -> bool:
    # Calls to OpenAI-compatible servers take the lean client and never import litellm.
    from ray_orch.model.client import uses_litellm

    for agent in agents.values():
        try:
            if uses_litellm(agent.llm_config):
                return True
        except Exception:
            return True  # no model configured yet: the call will say so, through litellm
    return False


def import_lean_client() -> None:
    """Import what a first call over the lean client loads (aiohttp, the HTTP client,
    the breaker, the attempt's model step and the steps it imports lazily), so that a
    member's first attempt imports nothing (a bind's prewarm; a standing runtime's
    prewarmed members, ``AgentActor.warm_imports``)."""
    import aiohttp  # noqa: F401

    import ray_orch.model.client
    import ray_orch.model.openai_http
    import ray_orch.policy.agent_chat
    import ray_orch.policy.breaker
    import ray_orch.policy.handoffs
    import ray_orch.policy.praison
    import ray_orch.policy.recall
    import ray_orch.policy.task  # noqa: F401


class AgentMember:
    """Executes task attempts; holds the agents and tasks of the runs it serves.

    The member side of a pool, in plain asyncio: ``actors.agent_actor.AgentActor`` is
    this class as a Ray actor, and ``ray_orch.testing.fakes`` serves it in-process.
    Remote objects it is handed (``forward``'s target) are called as
    ``target.deliver.remote(...)``, Ray's convention.
    """

    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}
        self.tasks: dict[tuple[str, str], Any] = {}
        self.in_flight = 0
        self.completed = 0
        self.prewarmed = False  # litellm's import started
        self.lean_warm = False  # the lean client's path imported (or started)
        self.handoffs: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self.recording: dict[tuple[str, str], asyncio.Future[None]] = {}
        """Records of handed-off outputs being written to the run store, by token."""
        self.bound: dict[str, asyncio.Event] = {}
        self.batched: dict[tuple[str, int, int], asyncio.Future[Any]] = {}
        # Cancels that arrived before their batch (calls start in any order), and runs
        # already unbound (a late call of one must not run, nor wait for a bind).
        self.tombstones: set[tuple[str, int, int]] = set()
        self.unbound: collections.deque[str] = collections.deque(maxlen=256)
        self.run_options: dict[str, RunOptions] = {}
        # Token events not yet sent, by run: sent together at the end of this turn of the
        # event loop (one call for what arrived at once, none left waiting).
        self.tokens_out: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        self.tokens_due = False
        # Sends of token batches, numbered: the Supervisor delivers them in this order
        # (an async actor may run calls in any order); the last ones awaited per run.
        self.member_id = f"{os.getpid()}-{id(self):x}"
        self.token_batches: dict[str, itertools.count[int]] = {}
        self.token_sends: dict[str, list[Any]] = {}
        # Which agents each bound run uses: an agent no bound run uses is dropped at
        # unbind, so a standing member's memory does not grow with runs.
        self.run_agents: dict[str, set[str]] = {}
        self.line_open = False  # this member's inbox is open (``open_line``)
        self.starts = Starts(self._run)  # attempts begun by their call's copy
        self.line_deliveries = 0  # hand-offs' outcomes that came on it first
        self.followed: set[tuple[str, str]] = set()  # tokens a follower waits on

    async def bind(self, binding: Binding) -> int:
        """Register a run's agents (by key) and tasks (by name, or the run's definitions
        as the driver pickled them: ``RunSpec.definitions``). Returns this pid.

        The Supervisor sends it with a member's first call of the run; a call that
        arrives before that one (calls to an async actor start in any order) waits here.

        With ``prewarm``, the first bind starts importing the model client in a thread
        (litellm: 3-5 s here; the lean client's path: ~0.4 s), so the import overlaps
        pool start-up and upstream tasks instead of delaying the first call. Without it
        (a standing ``AgentPool``), an idle member stays small (~50 MB instead of
        ~220 MB) until its first task. With
        ``prewarm="wait"`` the bind returns once that import is done (the member is then
        ready to call a model at once: a task's timeout starts from there).
        """
        run_id, agents, options = binding.run_id, binding.agents, binding.options
        prewarm = binding.prewarm
        if run_id in self.unbound:  # the bind of a call that arrived after its run ended
            return os.getpid()
        if options is not None:
            self.run_options[run_id] = options
            self.configure(options)
        self.agents.update(agents)
        self.run_agents.setdefault(run_id, set()).update(agents)
        tasks = binding.tasks
        if isinstance(tasks, bytes):
            graph = pickle.loads(tasks)[1]  # (tasks, graph, agents, default, manager)
            tasks = {name: node.task for name, node in graph.nodes.items()}
        for name, task in tasks.items():
            self.tasks[(run_id, name)] = task
        self._bound(run_id).set()
        if options is not None and options.reply_line is not None and not self.line_open:
            await self.open_line()
        waits = prewarm == "wait"
        if _needs_litellm(agents):
            if waits or (prewarm and not self.prewarmed):
                from ray_orch.model.client import litellm_module

                await self._prewarm(litellm_module, waits=waits, started=self.prewarmed)
                self.prewarmed = True
        elif prewarm and not self.lean_warm:  # the lean client's path: ~0.4 s once
            await self._prewarm(import_lean_client, waits=waits, started=False)
            self.lean_warm = True
        return os.getpid()

    async def _prewarm(self, load: Callable[[], Any], *, waits: bool, started: bool) -> None:
        if waits:
            # At once if imported, else when the import is done. If it fails, the first
            # call imports it again and reports why.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(load)
        elif not started:
            threading.Thread(target=load, name="model-import", daemon=True).start()

    async def _task_of(self, run_id: str, task_name: str) -> Any:
        task = self.tasks.get((run_id, task_name))
        if task is None and run_id not in self.unbound:
            await self._bound(run_id).wait()
            task = self.tasks.get((run_id, task_name))
        if task is None:  # a late call of a run that has ended here
            raise RunCancelledError(f"run {run_id} has ended; task '{task_name}' not run")
        return task

    def _bound(self, run_id: str) -> asyncio.Event:
        event = self.bound.get(run_id)
        if event is None:
            event = self.bound[run_id] = asyncio.Event()
        return event

    def _tokens_to(self, run_id: str, options: RunOptions | None, task_name: str,
                   iteration: int | None) -> Callable[[str, int], None] | None:
        """Where a task's streamed pieces go, when its run streams tokens."""
        if options is None or not options.tokens or options.listener is None:
            return None
        listener = options.listener

        def on_token(text: str, attempt: int) -> None:
            self.tokens_out.setdefault(run_id, (listener, []))[1].append(
                {"task": task_name, "ts": time.time(),
                 "data": {"text": text, "attempt": attempt, "iteration": iteration}})
            if not self.tokens_due:
                self.tokens_due = True
                asyncio.get_running_loop().call_soon(self._flush_tokens)

        return on_token

    def _progress_to(self, run_id: str, options: RunOptions | None, task_name: str,
                     iteration: int | None) -> Callable[[dict[str, Any]], None] | None:
        """Where a task's tool progress goes: ``tool_progress`` events, sent with the
        token batches (None: the run has no listener)."""
        if options is None or options.listener is None:
            return None
        listener = options.listener

        def on_progress(data: dict[str, Any]) -> None:
            self.tokens_out.setdefault(run_id, (listener, []))[1].append(
                {"kind": "tool_progress", "task": task_name, "ts": time.time(),
                 "data": {**data, "iteration": iteration}})
            if not self.tokens_due:
                self.tokens_due = True
                asyncio.get_running_loop().call_soon(self._flush_tokens)

        return on_progress

    def _approvals_to(self, run_id: str, options: RunOptions | None, task_name: str
                      ) -> Callable[[str, dict[str, Any]], Any] | None:
        """Who approves this task's tool calls: the run's Supervisor, which asks the
        driver (None: the run has no one to ask)."""
        if options is None or options.listener is None or not options.approvals:
            return None
        listener = options.listener

        async def approve(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
            return await listener.ask_tool.remote(  # type: ignore[no-any-return]
                ToolQuestion(run_id=run_id, task=task_name, tool=tool, arguments=arguments))

        return approve

    def _flush_tokens(self) -> None:
        self.tokens_due = False
        out, self.tokens_out = self.tokens_out, {}
        for run_id, (listener, events) in out.items():
            numbers = self.token_batches.setdefault(run_id, itertools.count())
            sent = listener.push.remote(TokenBatch(run_id=run_id, member=self.member_id,
                                                   number=next(numbers), events=events))
            self.token_sends.setdefault(run_id, []).append(sent)

    def configure(self, options: RunOptions) -> None:
        """Take a run's process-wide settings (a shell sets up tracing here)."""

    def unbind(self, run_id: str) -> None:
        """Forget a finished run's tasks."""
        self.run_options.pop(run_id, None)
        self.token_sends.pop(run_id, None)
        self.token_batches.pop(run_id, None)
        for task_key in [k for k in self.tasks if k[0] == run_id]:
            del self.tasks[task_key]
        self.unbound.append(run_id)
        used = set().union(*(v for k, v in self.run_agents.items() if k != run_id))
        for agent_key in self.run_agents.pop(run_id, set()) - used:
            self.agents.pop(agent_key, None)
        self.tombstones = {t for t in self.tombstones if t[0] != run_id}
        self.followed = {f for f in self.followed if f[0] != run_id}
        self.starts.drop(run_id)
        event = self.bound.pop(run_id, None)
        if event is not None:
            event.set()  # calls still waiting for a bind of this run end (see _task_of)
        for key in [k for k in self.recording if k[0] == run_id]:
            del self.recording[key]
        for key in [k for k in self.handoffs if k[0] == run_id]:
            future = self.handoffs.pop(key)
            if not future.done():
                future.set_result(None)

    async def run_task(self, request: TaskRequest) -> TaskOutput:
        """Run a task that travels with the call (the public ``AgentPool`` path)."""
        agent = self.agents[request.agent_key]
        self.in_flight += 1
        options = self.run_options.get(request.run_id or "")
        try:
            with shared.using(options.shared if options else None):
                output = await run_attempts(request.task, agent, RunInputs(
                    inputs=request.inputs, context=request.context))
        finally:
            self.in_flight -= 1
        self.completed += 1
        output.metadata["actor_pid"] = os.getpid()
        return output

    async def run(self, request: AttemptRequest) -> TaskOutput:
        """Run one task (all its attempts) with one agent and return its output.

        With a ``token``, the output is also handed to a ``run_after`` of that token here
        (a hand-off: the next task of a chain starts without a Supervisor round trip).
        With a ``reply`` key, a copy of the output also goes on the Supervisor's line.
        The first call of a run to this member carries the run's ``bind``. With a
        ``start`` key, a copy of this call on this member's line may have begun it
        (``engine/starts.py``).
        """
        return await self.starts.call(request)

    async def _run(self, request: AttemptRequest) -> TaskOutput:
        output = await self._attempt(request)
        await self._copy_reply(request.run_id, request.token, request.reply, output)
        return output

    async def _attempt(self, request: AttemptRequest) -> TaskOutput:
        if request.bind is not None:
            await self.bind(request.bind)
        run_id, task_name, token = request.run_id, request.task_name, request.token
        iteration = request.iteration
        task = await self._task_of(run_id, task_name)
        agent = self.agents[request.agent_key]
        handoff = self._handoff(run_id, token) if token is not None else None
        self.in_flight += 1
        options = self.run_options.get(run_id)
        try:
            progress = progress_to.set(self._progress_to(run_id, options, task_name,
                                                         iteration))
            try:
                with trace.attached(options.trace_context if options else None), \
                        shared.using(options.shared if options else None):
                    output = await run_attempts(task, agent, RunInputs(
                        inputs=request.inputs, context=request.context,
                        missing=request.missing, iteration=iteration,
                        on_token=self._tokens_to(run_id, options, task_name, iteration),
                        feedback=request.feedback, memory=options.memory if options else None,
                        approve_tool=self._approvals_to(run_id, options, task_name),
                        tool_journal=options.tool_journal if options else None,
                        route_descriptions=(options.route_descriptions.get(task_name, {})
                                            if options else {})))
            finally:
                progress_to.reset(progress)
            if options is not None and options.tokens:
                self._flush_tokens()
                # Every piece is delivered before the output returns.
                await asyncio.gather(*self.token_sends.pop(run_id, []))
        except BaseException:
            if handoff is not None and not handoff.done():
                handoff.set_result(None)  # the follower declines; the Supervisor decides
            raise
        finally:
            self.in_flight -= 1
        self.completed += 1
        output.metadata["actor_pid"] = os.getpid()
        if handoff is not None and not handoff.done():
            # Its record is written while a follower starts (up to its model call; its
            # tools and own record wait for it: ``tools.journal.recorded``); the output
            # returns once written, so the Supervisor's fuller record comes after it.
            followed = (run_id, token) in self.followed
            write = self._record(run_id, token, options, task_name, output,  # type: ignore[arg-type]
                                 turns=_FOLLOWER_TURNS if followed else 0)
            handoff.set_result((task_name, output))
            # One turn of the loop: a follower here starts (up to its model call), and one
            # elsewhere is forwarded, before this output is pickled for its return trip.
            # With a follower, a few more: its request goes out from a task of aiohttp's
            # own, and the return's pickling would hold the GIL meanwhile (~0.6 ms a
            # chain step here); the chain's next step does not wait on this reply then.
            for _ in range(_FOLLOWER_TURNS if followed else 1):
                await asyncio.sleep(0)
            if write is not None:
                # Its failure is not the task's: the Supervisor's own record decides
                # (the follower's tools meet it at their gate).
                with contextlib.suppress(Exception):
                    await asyncio.shield(write)
        return output

    def _record(self, run_id: str, token: str, options: RunOptions | None, task_name: str,
                output: TaskOutput, *, turns: int) -> asyncio.Future[None] | None:
        """Start writing ``output``'s record to the run's store (None: the run has none),
        after the record of the task it was itself handed off behind, and ``turns`` turns
        of the event loop (a follower's request goes out first: the write's thread
        would take the GIL from it; its tools wait for this write anyway)."""
        journal = options.tool_journal if options is not None else None
        if journal is None:
            return None
        output.task_id = task_name
        visit, kept = token_visit(token), output.model_copy(deep=True)

        async def write() -> None:
            await predecessor_recorded()
            for _ in range(turns):
                await asyncio.sleep(0)
            await asyncio.to_thread(record_task, journal.store, journal.run_id, task_name,
                                    visit, kept, keep=True)

        written = self.recording[(run_id, token)] = asyncio.ensure_future(write())
        return written

    async def run_many(self, request: BatchRequest
                       ) -> AsyncIterator[list[tuple[int, TaskOutput | None,
                                                     BaseException | None]]]:
        """Run many tasks at once (loop iterations, sent together: one call instead of one
        each); yields ``(index, output, error)`` lists as they finish, what finished
        together in one item."""
        if request.bind is not None:
            await self.bind(request.bind)
        run_id, batch, items = request.run_id, request.batch, request.items
        done: asyncio.Queue[tuple[int, TaskOutput | None, BaseException | None]] = \
            asyncio.Queue()

        def report(index: int, name: str, job: asyncio.Future[TaskOutput]) -> None:
            # Every job reports once, even one cancelled before it started.
            if job.cancelled():
                done.put_nowait((index, None, RunCancelledError(f"task '{name}' was cancelled")))
            elif job.exception() is not None:
                done.put_nowait((index, None, self.portable(job.exception())))  # type: ignore[arg-type]
            else:
                done.put_nowait((index, job.result(), None))

        jobs = {index: asyncio.ensure_future(self._attempt(item)) for index, item in enumerate(items)}
        for index, job in jobs.items():
            job.add_done_callback(functools.partial(report, index, items[index].task_name))
        for index, job in jobs.items():
            self.batched[(run_id, batch, index)] = job
            if (run_id, batch, index) in self.tombstones:
                self.tombstones.discard((run_id, batch, index))
                job.cancel()
        try:
            left = len(jobs)
            while left:
                finished = [await done.get()]
                while not done.empty():
                    finished.append(done.get_nowait())
                left -= len(finished)
                yield finished
        finally:
            for index, job in jobs.items():
                job.cancel()
                self.batched.pop((run_id, batch, index), None)

    def cancel_one(self, run_id: str, batch: int, index: int) -> None:
        """Cancel one task of a ``run_many`` batch (its caller gave up on it)."""
        job = self.batched.get((run_id, batch, index))
        if job is not None:
            job.cancel()
        elif run_id not in self.unbound:
            self.tombstones.add((run_id, batch, index))  # the batch has not started yet

    async def run_after(self, request: HandOffRequest) -> TaskOutput | None:
        """Run a task as soon as the ``run`` of token ``after`` has succeeded, here or in a
        member that ``deliver``s its outcome, with its output added to ``context``; None
        (nothing run) if that run failed or was cancelled. The Supervisor checks, when
        ``after`` completes, that this is the dispatch it would have made, and cancels
        it otherwise."""
        attempt, after, order = request.attempt, request.after, request.order
        run_id = attempt.run_id
        if attempt.bind is not None:
            await self.bind(attempt.bind)
        # The hand-off stays until the run is unbound: another follower of the same task
        # may still arrive (calls to an async actor start in any order).
        # Shielded: cancelling one follower must not cancel what its siblings wait for.
        self.followed.add((run_id, after))
        handed = await asyncio.shield(self._handoff(run_id, after))
        if handed is None:
            return None
        name, previous = handed
        # The context in the order the task lists it, as when the Supervisor sends it.
        full = {**attempt.context, name: previous}
        if order is not None:
            full = {key: full[key] for key in order if key in full}
        # Its tools and its own record wait for its predecessor's record (written here).
        gate = recorded.set(self.recording.get((run_id, after)))
        try:
            output = await self._attempt(AttemptRequest(
                run_id=run_id, agent_key=attempt.agent_key, task_name=attempt.task_name,
                context=full, token=attempt.token))
        finally:
            recorded.reset(gate)
        output.metadata["handed_off"] = True
        await self._copy_reply(run_id, attempt.token, attempt.reply, output)
        return output

    async def forward(self, run_id: str, token: str, target: Any) -> None:
        """Send the outcome of the ``run`` of ``token`` here, once known, to ``target``:
        a member of another agent's pool, where a ``run_after`` of that token waits."""
        if run_id in self.unbound:
            return
        self.followed.add((run_id, token))

        def send(handed: asyncio.Future[Any]) -> None:
            if handed.cancelled():
                return
            write = self.recording.get((run_id, token))
            if write is None or handed.result() is None:
                self._deliver_to(target, run_id, token, handed.result())
                return
            # There, the follower starts once the output is durable here (or declines).
            write.add_done_callback(lambda w: self._deliver_to(
                target, run_id, token, None if w.cancelled() or w.exception() else handed.result()))

        self._handoff(run_id, token).add_done_callback(send)

    def _deliver_to(self, target: Any, run_id: str, token: str,
                    handed: tuple[str, Any] | None) -> None:
        # On the target's line if it has one here (~0.2 ms against ~2 ms for a call, and
        # no call's work there as its follower starts); else by call. Either way the
        # Supervisor delivers it too, once it has the predecessor's reply.
        name = actor_line(target)
        if name is None or not self.line_open or not Line.here().post(
                name, "deliver", (run_id, token), handed):
            target.deliver.remote(run_id, token, handed)

    async def _copy_reply(self, run_id: str, token: str | None, reply: str | None,
                          output: TaskOutput) -> None:
        """A copy of ``output`` on the Supervisor's line, under ``reply``: the Supervisor
        takes whichever of it and the call's reply comes first. Not when a follower took
        the output (the next step runs already: the Supervisor's answer is not awaited,
        and coming early it would only compete with that step's start), nor once this
        member sent a live event of the run by Ray (a copy could overtake one)."""
        options = self.run_options.get(run_id)
        if token is not None and (run_id, token) in self.followed:
            self.followed.discard((run_id, token))
            return
        # Live events go by Ray, in batches whose sends other attempts may await and
        # drop: once this member sent one for the run, its copies could overtake them.
        if (reply is None or options is None or options.reply_line is None
                or not self.line_open or run_id in self.token_batches
                or run_id in self.tokens_out):
            return
        await Line.here().send(options.reply_line, "reply", reply, output)

    async def open_line(self) -> None:
        """Open this member's inbox (a shell with a name for it does: ``AgentActor``),
        where hand-offs' outcomes arrive as copies (``deliver``)."""

    def _delivered(self, key: tuple[str, str], handed: tuple[str, Any] | None) -> None:
        # A hand-off's outcome that came on this member's line.
        if key[0] not in self.unbound:
            future = self._handoff(*key)
            if not future.done():
                self.line_deliveries += 1
                future.set_result(handed)

    async def deliver(self, run_id: str, token: str, handed: tuple[str, Any] | None) -> None:
        """The outcome of another member's run of ``token``: ``(task name, output)``, or
        None if it failed. The first of the senders (that member by Ray or by line, the
        Supervisor) wins."""
        if run_id in self.unbound:
            return
        future = self._handoff(run_id, token)
        if not future.done():
            future.set_result(handed)

    def _handoff(self, run_id: str, token: str) -> asyncio.Future[Any]:
        # Whichever of run / run_after arrives first creates it.
        key = (run_id, token)
        future = self.handoffs.get(key)
        if future is None:
            future = self.handoffs[key] = asyncio.get_running_loop().create_future()
        return future

    async def ask(self, question: Question) -> str:
        """One plain model call as this agent (the hierarchical manager uses it)."""
        if question.bind is not None:
            await self.bind(question.bind)
        if question.agent_key not in self.agents and question.run_id is not None:
            await self._bound(question.run_id).wait()
        agent = self.agents[question.agent_key]
        prompt, schema = question.prompt, question.schema
        response_format = None
        if schema is not None:
            response_format = {"type": "json_schema",
                               "json_schema": {"name": schema.get("title", "answer"),
                                               "schema": schema, "strict": True}}
        options = self.run_options.get(question.run_id or "")
        with shared.using(options.shared if options else None):
            result = await agent.acomplete(prompt, output_schema=response_format)
        return result.text

    def portable(self, exc: BaseException) -> BaseException:
        """``exc`` as it may travel back to the caller (a shell that pickles replaces
        what cannot be pickled)."""
        return exc

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "in_flight": self.in_flight, "completed": self.completed,
                "line_deliveries": self.line_deliveries, "line_starts": self.starts.taken}
