"""Task callbacks and output files, run on the driver as each task's output arrives.

A task with ``callback=`` (or ``on_task_complete=``) or ``output_file=`` has its output
sent to the driver in a ``task_completed`` event when it completes (a loop's once, after its
last iteration). ``Deliveries`` writes the file and calls the callback there, where the
user's objects live: a sync callback at once, an async one as a task the run awaits
before it returns. A callback's exception is logged and kept in the output's
``callback_error``; with ``fail_on_callback_error=True`` it fails the run after it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray_orch.core.errors import TaskFailedError
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput

__all__ = ["Deliveries"]

log = logging.getLogger("ray_orch.callbacks")


class Deliveries:
    """The callbacks and output files of one run.

    Args:
        tasks: the run's driver-side tasks by name.
        view: changes an output before a callback sees it (a team's PraisonAI view).
    """

    def __init__(self, tasks: dict[str, Any],
                 view: Callable[[TaskOutput, Any], TaskOutput] | None = None) -> None:
        self.tasks = tasks
        self.view = view
        self.pending: list[asyncio.Future[Any]] = []
        self.errors: list[tuple[str, BaseException]] = []

    def on_event(self, event: Event) -> bool:
        """Handle a ``task_completed`` event; whether it was one."""
        if event.kind != "task_completed":
            return False
        output = TaskOutput.model_validate(event.data.get("output") or {})
        task = self.tasks.get(event.task or "")
        schema = task.output_schema() if task is not None else None
        if schema is not None and output.json_dict is not None:
            output.pydantic = schema.model_validate(output.json_dict)  # the driver's class
        self.deliver(event.task or "", output)
        return True

    def deliver(self, name: str, output: TaskOutput) -> None:
        """Write the task's output file and call its callback."""
        task = self.tasks.get(name)
        if task is None:
            return
        if getattr(task, "output_file", None):
            write_output(task, output)
        callback = getattr(task, "callback", None)
        if callback is None:
            return
        if self.view is not None:
            output = self.view(output, task)
        try:
            result = callback(output)
        except Exception as exc:  # kept, and raised after the run if asked to
            self._failed(name, exc)
            return
        if inspect.isawaitable(result):
            self.pending.append(asyncio.ensure_future(self._await(name, result)))

    def later(self, awaitable: Any) -> None:
        """Await this before the run returns."""
        self.pending.append(asyncio.ensure_future(awaitable))

    async def drain(self) -> None:
        """Wait for every async callback (and what they started)."""
        while self.pending:
            pending, self.pending = self.pending, []
            await asyncio.gather(*pending)

    def finish(self, outputs: dict[str, TaskOutput]) -> None:
        """Mark outputs whose callback failed; raise for a task that asked to fail.

        Raises:
            TaskFailedError: a task with ``fail_on_callback_error=True`` had its callback
                raise (the error is chained).
        """
        for name, exc in self.errors:
            if getattr(self.tasks.get(name), "fail_on_callback_error", False):
                raise TaskFailedError(f"task '{name}': its callback raised "
                                      f"{type(exc).__name__}: {exc}", task=name,
                                      results=dict(outputs)) from exc
        for name, exc in self.errors:
            if name in outputs:
                outputs[name].callback_error = f"{type(exc).__name__}: {exc}"

    async def _await(self, name: str, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception as exc:
            self._failed(name, exc)

    def _failed(self, name: str, exc: BaseException) -> None:
        log.error("task '%s': callback raised %s: %s", name, type(exc).__name__, exc)
        self.errors.append((name, exc))


def write_output(task: Any, output: TaskOutput) -> None:
    """``str(output)`` to the task's ``output_file`` (``create_directory`` makes its
    parents); an error is logged, as PraisonAI does, and the run goes on."""
    path = Path(task.output_file)
    try:
        if getattr(task, "create_directory", False):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(output), encoding="utf-8")
    except OSError as exc:
        log.error("task '%s': cannot write output_file '%s': %s", task.id, path, exc)
