"""``Supervisor``: owns one run. A thin shell over ``ray_orch._run.Run``: it runs the
scheduler loop in its event loop and streams event batches, then the result, back to
the driver through a Ray streaming generator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ray

from ray_orch._errors import SerializationError
from ray_orch._events import Event
from ray_orch._run import Run, RunSpec
from ray_orch._runtime import settle_heap

# Events are shipped in batches, one per this many seconds at most, so neither a
# 10,000-task run nor a chain of short steps pays a driver round trip per event.
_BATCH_SECONDS = 0.1


@ray.remote(num_cpus=0)
class Supervisor:
    """One per run: scheduling, dispatch, routing, checkpoints, events."""

    def __init__(self) -> None:
        self.job: asyncio.Task[Any] | None = None
        settle_heap()

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
        run = Run(spec, emit=queue.put_nowait)
        self.job = asyncio.ensure_future(run.execute())
        while True:
            # Events of this window go out together; the run's end wakes this at once.
            await asyncio.wait([self.job], timeout=_BATCH_SECONDS)
            batch = []
            while not queue.empty():
                batch.append(queue.get_nowait())
            if self.job.done():
                yield ("result", (self.job.result(), [e.model_dump() for e in batch]))
                return
            if batch:
                yield ("events", [e.model_dump() for e in batch])

    def release(self) -> int:
        """Give the members this Supervisor keeps between runs back to the registry
        (before it is stopped); returns how many."""
        from ray_orch._dispatch import release_kept

        return release_kept()

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
