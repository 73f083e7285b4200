"""``Supervisor``: owns one run. A thin shell over ``ray_orch.engine.run.Run`` and
``ray_orch.engine.listener.RunListener``: it opens the cluster services the run uses (its
ports: the registry, the result cache, the metrics hub), runs the loop in its event loop
and streams event batches, then the result, back to the driver through a Ray streaming
generator; members' token batches and tool-call questions go to its listener."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import AsyncIterator
from typing import Any

import ray

from actors import cluster_services
from actors.cache_actor import get_cache_actor
from actors.metrics_hub import checked_endpoint, start_metrics_hub
from ray_orch.core.approvals import RunPaused
from ray_orch.core.errors import RunCancelledError, SerializationError
from ray_orch.core.events import Event
from ray_orch.core.line import Line, open_inbox
from ray_orch.core.proc import settle_heap
from ray_orch.engine.listener import RunListener
from ray_orch.engine.messages import TokenBatch, ToolQuestion
from ray_orch.engine.ports import KeptMembers, Services
from ray_orch.engine.run import Run
from ray_orch.engine.runspec import RunSpec
from ray_orch.observe.metrics import EventBatcher
from ray_orch.observe.tracing import configure as configure_tracing
from ray_orch.observe.tracing import flush as flush_tracing
from ray_orch.store.approvals import PauseStore

# How long a run begun by its driver's copy waits for the call itself.
_ORPHANED_S = 60.0
# Events are shipped in batches, one per this many seconds at most, so neither a
# 10,000-task run nor a chain of short steps pays a driver round trip per event.
_BATCH_SECONDS = 0.1


@ray.remote(num_cpus=0)
class Supervisor:
    """One per run: scheduling, dispatch, routing, checkpoints, events."""

    def __init__(self, registry: Any) -> None:
        self.job: asyncio.Task[Any] | None = None
        self.registry = registry
        self.kept = KeptMembers()  # members kept between this Supervisor's runs
        # The run in progress, and where its events wait.
        self.running: Run | None = None
        self.listener = RunListener()  # members' token batches and questions
        self.line: Line | None = None  # this Supervisor's inbox, once a run opened it
        # Runs begun by the driver's copy of their ``run`` call, by start key, until the
        # call comes; and the keys seen lately (a run begins once).
        self.begun: dict[str, asyncio.Future[_Started]] = {}
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.starting = 0  # runs being loaded (``_begin``), before ``running`` is set
        settle_heap()

    async def _services(self, spec: RunSpec) -> Services:
        """The cluster services ``spec`` uses: metrics hub and result cache."""
        services = Services(registry=self.registry, remote=_RayRemote(), kept=self.kept,
                            lessee=ray.get_runtime_context().get_actor_id(),
                            shared=cluster_services(),
                            listener=ray.get_runtime_context().current_actor
                            if spec.tokens or spec.stream or spec.approvals == "inline"
                            else None)
        if spec.metrics:
            try:
                # Looking the named hub up is a blocking call: keep the event loop free.
                hub, wanted = await asyncio.get_running_loop().run_in_executor(
                    None, start_metrics_hub, spec.metrics_host, spec.metrics_port)
                services.metrics_url = checked_endpoint(await hub.endpoint.remote(), wanted)
            except Exception as exc:  # metrics must never fail a run
                services.metrics_error = f"{type(exc).__name__}: {exc}"
            else:
                services.metrics = EventBatcher(lambda batch: hub.push.remote(batch))
        services.store = spec.store
        # Named after this Supervisor: members send copies of outputs there.
        services.line = self.line = await open_inbox(ray.get_runtime_context().get_actor_id())
        if services.line is not None:
            services.line.on("start", self._start_copy)
        services.defer_release = True  # ``run`` releases once the result is on its way
        if spec.cache or any(t.cache_ttl for t in spec.tasks):
            services.cache = get_cache_actor(spec.store)
        return services

    async def run(self, packed: bytes, reply: tuple[str, str] | None = None,
                  start: str | None = None) -> AsyncIterator[tuple[str, Any]]:
        """Execute the run; yields ``("events", [dict, ...])`` batches, then
        ``("result", (RunResult, [dict, ...]))``: the result with the last events, in one
        item (each item is a round trip to the driver). With ``reply`` (the driver's line
        and a key), a copy of the result goes there first, with how many items came
        before it (``ray_orch.api.result_line``). ``start``: the key of the copy of this
        call the driver sent on this Supervisor's line; the run began when the first of
        the two came, and begins once."""
        begun = self.begun.pop(start, None) if start is not None else None
        if begun is None:
            if start is not None and start in self.seen:  # its copy began it, then it was orphaned
                raise RunCancelledError("the run was cancelled: its driver did not follow it")
            begun = asyncio.ensure_future(self._begin(packed))
            if start is not None:
                self._saw(start)
        started = await begun
        run, spec, job = started.run, started.run.spec, started.job
        streamed = 0
        try:
            while True:
                await self._wait(job, started.arrived, spec.stream)
                batch = []
                while not started.queue.empty():
                    batch.append(started.queue.get_nowait())
                if job.done():
                    if spec.telemetry:  # this run's spans leave before its result
                        await asyncio.to_thread(flush_tracing)
                    result = job.result()
                    _make_portable(result)
                    if isinstance(result.error, RunPaused) and spec.store is not None:
                        # Its definition (kept, signed, by the driver) stays with its
                        # requests: any process continues it.
                        await asyncio.to_thread(PauseStore(spec.store).pause, spec.run_id)
                    last = ("result", (result, [e.model_dump() for e in batch]))
                    if reply is not None:
                        await Line.here().send(reply[0], "reply", reply[1], (streamed, last))
                    run.release()
                    yield last
                    return
                if batch:
                    streamed += 1
                    yield ("events", [e.model_dump() for e in batch])
        finally:
            self._ended(run)

    def _ended(self, run: Run) -> None:
        run.release()  # a run that ended without its result (cancelled, failed)
        if self.running is run:  # (its driver may have begun the next one already)
            self.listener.stop()
            self.running = None

    async def _begin(self, packed: bytes) -> _Started:
        """Load the run and start it (``run`` follows it)."""
        self.starting += 1
        try:
            return await self._load(packed)
        finally:
            self.starting -= 1

    async def _load(self, packed: bytes) -> _Started:
        import ray.cloudpickle as pickle

        try:  # pickled once by the driver, which checked it
            spec: RunSpec = pickle.loads(packed)
            spec.open_definitions(pickle.loads)
        except Exception as exc:
            raise SerializationError(
                f"the run's tasks and agents cannot be loaded on the cluster "
                f"({type(exc).__name__}: {exc}); what they reference must be importable "
                "there: ship a module that only this driver has with runtime_env="
                "{'py_modules': [...]} or a working_dir (Process(runtime_env=...) or "
                "ray.init)",
                field="tasks") from None
        configure_tracing(spec.telemetry)
        started = _Started()

        def emit(event: Event) -> None:
            started.queue.put_nowait(event)
            started.arrived.set()

        started.run = run = Run(spec, emit=emit, services=await self._services(spec))
        self.listener.follow(members_key=run.members_key, workflow=spec.workflow,
                             run_id=spec.run_id, emit=emit, approvals=run.approvals)
        self.running = run
        self.job = started.job = asyncio.ensure_future(run.execute())
        return started

    def _start_copy(self, key: str, value: tuple[bytes, tuple[str, str] | None]) -> None:
        """The driver's copy of a ``run`` call, on this Supervisor's line: the run begins
        now (~2 ms before the call arrives); the call follows it."""
        if key in self.seen or self.running is not None:
            return
        self._saw(key)
        begun = self.begun[key] = asyncio.ensure_future(self._begin(value[0]))
        asyncio.get_running_loop().call_later(_ORPHANED_S, self._orphaned, key)
        begun.add_done_callback(lambda f: f.cancelled() or f.exception())  # the call reads it

    def _saw(self, key: str) -> None:
        # The start keys of the last 256 runs (a late copy of one must not begin it again).
        self.seen[key] = None
        while len(self.seen) > 256:
            self.seen.popitem(last=False)

    def _orphaned(self, key: str) -> None:
        # The call never came (its driver died after sending the copy): stop the run.
        begun = self.begun.pop(key, None)
        if begun is not None:
            begun.add_done_callback(self._stop_orphan)

    def _stop_orphan(self, begun: asyncio.Future[_Started]) -> None:
        if begun.cancelled() or begun.exception() is not None:
            return
        started = begun.result()
        started.job.cancel()
        started.job.add_done_callback(lambda _: self._ended(started.run))

    async def _wait(self, job: asyncio.Task[Any], arrived: asyncio.Event,
                    streaming: bool) -> None:
        # Events of a window go out together (a 10,000-task run does not pay a driver
        # round trip per event); a streamed run's go out as they come. The run's end
        # wakes this at once either way.
        if not streaming:
            await asyncio.wait([job], timeout=_BATCH_SECONDS)
            return
        waiter = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait([job, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        arrived.clear()

    def answer(self, request_id: str, answer: dict[str, Any]) -> bool:
        """A person's answer to an inline approval request of the run in progress."""
        return self.listener.answer(request_id, answer)

    async def ask_tool(self, question: ToolQuestion) -> dict[str, Any]:
        """A member asks whether a tool call may run: the driver's answer (as data)."""
        return await self.listener.ask_tool(question)

    def push(self, batch: TokenBatch) -> None:
        """Live events from the run's members (token deltas, tool progress), streamed to the driver with
        the run's own, in each member's order (``RunListener.push``)."""
        self.listener.push(batch)

    def info(self) -> dict[str, Any]:
        """This Supervisor's pid, its run in progress, whether it is busy (a run begun,
        loading or running), how many members it keeps and how many outputs came on its
        line first."""
        return {"pid": os.getpid(), "run_id": self.running.spec.run_id if self.running else None,
                "busy": self.running is not None or self.starting > 0 or bool(self.begun),
                "kept": sum(len(v) for v in self.kept.held.values()),
                "line_replies": self.line.taken if self.line is not None else 0}

    def release(self) -> int:
        """Give the members this Supervisor keeps between runs back to the registry
        (before it is stopped); returns how many."""
        count = 0
        for (placement_key, key), handles in self.kept.release().items():
            self.registry.give_back.remote(placement_key, handles, agent_key=key)
            count += len(handles)
        return count

    async def cancel(self) -> bool:
        """Cancel the run: in-flight attempts are cancelled, completed results kept.

        Returns once the run has wound down (checkpoints closed), so a driver that exits
        right after (Ctrl-C) leaves its state consistent.
        """
        if self.job is None or self.job.done():
            return False
        self.job.cancel()
        await asyncio.wait([self.job], timeout=30)
        return True


class _Started:
    """A run begun: the run, and its events waiting to be streamed."""

    run: Run
    job: asyncio.Task[Any]

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.arrived = asyncio.Event()


def _make_portable(result: Any) -> None:
    """An engine fault's cause travels to the driver (to be chained there) if it can be
    pickled; else a RuntimeError naming it does."""
    import ray.cloudpickle as pickle

    original = getattr(result.error, "original", None)
    if original is None:
        return
    try:
        pickle.dumps(original)
    except Exception:
        result.error.original = RuntimeError(f"{type(original).__name__}: {original}")


class _RayRemote:
    """The engine's ``Remote`` port on Ray: cancel a call by its ``ObjectRef``."""

    lost: tuple[type[BaseException], ...] = (ray.exceptions.ActorDiedError,
                                             ray.exceptions.ActorUnavailableError)

    def cancel(self, ref: Any) -> None:
        ray.cancel(ref)
