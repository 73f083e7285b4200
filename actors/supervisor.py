"""``Supervisor``: owns one run. A thin shell over ``ray_orch.engine.run.Run`` and
``ray_orch.engine.listener.RunListener``: it opens the cluster services the run uses (its
ports: the registry, the result cache, the metrics hub), runs the loop in its event loop
and streams event batches, then the result, back to the driver through a Ray streaming
generator; members' token batches and tool-call questions go to its listener."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import ray

from actors import cluster_services
from actors.cache_actor import get_cache_actor
from actors.metrics_hub import checked_endpoint, start_metrics_hub
from ray_orch.core.approvals import RunPaused
from ray_orch.core.errors import SerializationError
from ray_orch.core.events import Event
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
        if spec.cache or any(t.cache_ttl for t in spec.tasks):
            services.cache = get_cache_actor(spec.store)
        return services

    async def run(self, packed: bytes) -> AsyncIterator[tuple[str, Any]]:
        """Execute the run; yields ``("events", [dict, ...])`` batches, then
        ``("result", (RunResult, [dict, ...]))``: the result with the last events, in one
        item (each item is a round trip to the driver)."""
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
        queue: asyncio.Queue[Event] = asyncio.Queue()
        arrived = asyncio.Event()

        def emit(event: Event) -> None:
            queue.put_nowait(event)
            arrived.set()

        run = Run(spec, emit=emit, services=await self._services(spec))
        self.listener.follow(members_key=run.members_key, workflow=spec.workflow,
                             run_id=spec.run_id, emit=emit, approvals=run.approvals)
        self.running = run
        self.job = asyncio.ensure_future(run.execute())
        try:
            while True:
                await self._wait(arrived, spec.stream)
                batch = []
                while not queue.empty():
                    batch.append(queue.get_nowait())
                if self.job.done():
                    if spec.telemetry:  # this run's spans leave before its result
                        await asyncio.to_thread(flush_tracing)
                    result = self.job.result()
                    _make_portable(result)
                    if isinstance(result.error, RunPaused) and spec.store is not None:
                        # Its definition (kept, signed, by the driver) stays with its
                        # requests: any process continues it.
                        await asyncio.to_thread(PauseStore(spec.store).pause, spec.run_id)
                    yield ("result", (result, [e.model_dump() for e in batch]))
                    return
                if batch:
                    yield ("events", [e.model_dump() for e in batch])
        finally:
            self.listener.stop()
            self.running = None

    async def _wait(self, arrived: asyncio.Event, streaming: bool) -> None:
        # Events of a window go out together (a 10,000-task run does not pay a driver
        # round trip per event); a streamed run's go out as they come. The run's end
        # wakes this at once either way.
        assert self.job is not None
        if not streaming:
            await asyncio.wait([self.job], timeout=_BATCH_SECONDS)
            return
        waiter = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait([self.job, waiter], return_when=asyncio.FIRST_COMPLETED)
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
        """This Supervisor's pid, its run in progress and how many members it keeps."""
        return {"pid": os.getpid(), "run_id": self.running.spec.run_id if self.running else None,
                "kept": sum(len(v) for v in self.kept.held.values())}

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
