"""A user's ``Task.execute()`` override, run in a thread of the Supervisor.

The guide's ``CachedTask`` and ``CircuitBreakerTask`` subclass ``Task`` and override
``execute()``. In a process the override runs here, on the run's one copy of the Task (so
state like failure counts persists between visits; the driver's Task is not touched);
its ``super().execute()`` hands the attempt, with the dispatch's context, to the pools
through ``policy.task``'s bridge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ray_orch.core.errors import RunError
from ray_orch.core.output import TaskOutput
from ray_orch.engine.scheduler import Dispatch
from ray_orch.policy.attempt import run_with_fallback
from ray_orch.policy.task import Task, _bridge

__all__ = ["Overrides"]

Submit = Callable[[Any, dict[str, Any] | None], Awaitable[TaskOutput]]


class Overrides:
    """Runs ``execute()`` overrides; one thread pool for the run, made on first use."""

    def __init__(self) -> None:
        self.threads: concurrent.futures.ThreadPoolExecutor | None = None

    async def run(self, task: Task, dispatch: Dispatch, context: dict[str, TaskOutput],
                  submit: Submit) -> TaskOutput:
        """Run ``task.execute()``; ``submit(agent, inputs)`` runs one attempt on a pool."""
        loop = asyncio.get_running_loop()
        inner_calls: list[concurrent.futures.Future[TaskOutput]] = []

        def bridge(inner: Task, inputs: dict[str, Any] | None) -> TaskOutput:
            async def go() -> TaskOutput:
                return await run_with_fallback(inner, lambda agent: submit(agent, inputs))

            future = asyncio.run_coroutine_threadsafe(go(), loop)
            inner_calls.append(future)
            return future.result()

        def target() -> TaskOutput:
            _bridge.call = bridge
            try:
                # The guide's subclasses define execute(self) without inputs; the bridge
                # hands a loop row's inputs to the attempt either way.
                if dispatch.inputs is None or not _takes_inputs(task.execute):
                    return task.execute()
                return task.execute(dispatch.inputs)
            finally:
                _bridge.call = None

        if self.threads is None:
            # Its own threads: the loop's default executor has min(32, cpus + 4), which
            # would cap a loop of overrides at 6 attempts at once on this machine.
            self.threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=256, thread_name_prefix="ray-orch-execute")
        try:
            result = await loop.run_in_executor(self.threads, target)
        except asyncio.CancelledError:
            for future in inner_calls:  # a timeout or cancel stops the attempts too
                future.cancel()
            raise
        if not isinstance(result, TaskOutput):
            raise RunError(f"task '{dispatch.task}': execute() returned "
                           f"{type(result).__name__}, expected TaskOutput", task=dispatch.task)
        return result

    def close(self) -> None:
        """Stop the threads (the run is over)."""
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)


def _takes_inputs(method: Any) -> bool:
    """Whether a bound ``execute`` accepts a positional ``inputs`` argument."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)
