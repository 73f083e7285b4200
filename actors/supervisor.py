"""``Supervisor``: owns one run. A thin shell over ``ray_orch.engine.run.Run``: it opens the
cluster services the run uses (its ports: the registry, the result cache, the metrics
hub), runs the loop in its event loop and streams event batches, then the result, back
to the driver through a Ray streaming generator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import ray

from actors.cache_actor import get_cache_actor
from actors.metrics_hub import checked_endpoint, start_metrics_hub
from ray_orch.core.errors import SerializationError
from ray_orch.core.events import Event
from ray_orch.core.proc import settle_heap
from ray_orch.engine.ports import KeptMembers, Services
from ray_orch.engine.run import Run, RunSpec
from ray_orch.observe.metrics import EventBatcher

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
        self.run_id: str | None = None  # the run in progress, if any
        settle_heap()

    async def _services(self, spec: RunSpec) -> Services:
        """The cluster services ``spec`` uses: metrics hub and result cache."""
        services = Services(registry=self.registry, remote=_RayRemote(), kept=self.kept)
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
        if spec.cache or any(t.cache_ttl for t in spec.tasks):
            services.cache = get_cache_actor(spec.checkpoint_dir)
        return services

    async def run(self, packed: bytes) -> AsyncIterator[tuple[str, Any]]:
        """Execute the run; yields ``("events", [dict, ...])`` batches, then
        ``("result", (RunResult, [dict, ...]))``: the result with the last events, in one
        item (each item is a round trip to the driver)."""
        import ray.cloudpickle as pickle

        try:  # pickled once by the driver, which checked it
            spec: RunSpec = pickle.loads(packed)
        except Exception as exc:
            raise SerializationError(
                f"the run's tasks and agents cannot be loaded on the cluster "
                f"({type(exc).__name__}: {exc}); what they reference must be importable "
                "there: ship a module that only this driver has with runtime_env="
                "{'py_modules': [...]} or a working_dir (Process(runtime_env=...) or "
                "ray.init)",
                field="tasks") from None
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self.run_id = spec.run_id
        run = Run(spec, emit=queue.put_nowait, services=await self._services(spec))
        self.job = asyncio.ensure_future(run.execute())
        while True:
            # Events of this window go out together; the run's end wakes this at once.
            await asyncio.wait([self.job], timeout=_BATCH_SECONDS)
            batch = []
            while not queue.empty():
                batch.append(queue.get_nowait())
            if self.job.done():
                self.run_id = None
                yield ("result", (self.job.result(), [e.model_dump() for e in batch]))
                return
            if batch:
                yield ("events", [e.model_dump() for e in batch])

    def info(self) -> dict[str, Any]:
        """This Supervisor's pid, its run in progress and how many members it keeps."""
        return {"pid": os.getpid(), "run_id": self.run_id,
                "kept": sum(len(v) for v in self.kept.held.values())}

    def release(self) -> int:
        """Give the members this Supervisor keeps between runs back to the registry
        (before it is stopped); returns how many."""
        count = 0
        for (placement_key, key), handles in self.kept.release().items():
            self.registry.give_back.remote(placement_key, handles, key)
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


class _RayRemote:
    """The engine's ``Remote`` port on Ray: cancel a call by its ``ObjectRef``."""

    lost: tuple[type[BaseException], ...] = (ray.exceptions.ActorDiedError,
                                             ray.exceptions.ActorUnavailableError)

    def cancel(self, ref: Any) -> None:
        ray.cancel(ref)
