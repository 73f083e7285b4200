"""``Process.stream()`` and ``astream()``: a run's events, live, as ``StreamEvent``s.

The run goes as ``workflow()`` runs it, with two differences: its Supervisor sends events
as they happen instead of every 0.1 s, and each event is also turned into the public
schema (``ray_orch.core.stream``) and handed to the caller. Closing the iterator early
cancels the run, which winds down before the iterator returns.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from ray_orch.core.errors import RayOrchError, RunError
from ray_orch.core.events import Event
from ray_orch.core.stream import StreamEvent, to_stream
from ray_orch.core.sync import background_loop

if TYPE_CHECKING:
    from ray_orch.api.process import Process
    from ray_orch.engine.graph import Mode

__all__ = ["astream", "stream"]

_END = object()


async def _drive(process: Process, mode: Mode, tokens: bool, kwargs: dict[str, Any],
                 put: Callable[[Any], None]) -> None:
    """Run the process, handing every public event to ``put``, and its end."""

    def live(event: Event) -> None:
        for public in to_stream(event):
            put(public)

    try:
        results = await process._arun(mode, live=live, tokens=tokens, **kwargs)
    except asyncio.CancelledError:
        raise
    except RunError as exc:
        for event in _skipped(process):
            put(event)
        put(StreamEvent(kind="run_failed", **_ids(process), error=str(exc),
                        error_type=type(exc).__name__, results=dict(exc.results or {})))
    except RayOrchError:
        raise  # a definition error: raised to the caller, nothing ran
    else:
        for event in _skipped(process):
            put(event)
        put(StreamEvent(kind="run_completed", **_ids(process), results=results))


def _ids(process: Process) -> dict[str, Any]:
    result = process.last_result
    return {"run_id": result.run_id if result else "", "workflow": process.name}


def _skipped(process: Process) -> list[StreamEvent]:
    result = process.last_result
    if result is None:
        return []
    return [StreamEvent(kind="task_skipped", **_ids(process), task=name,
                        error=result.skip_reasons.get(name))
            for name, status in result.statuses.items() if status == "skipped"]


def stream(process: Process, mode: Mode = "workflow", *, tokens: bool = False,
           **kwargs: Any) -> Iterator[StreamEvent]:
    """See ``Process.stream``."""
    process.validate(mode)  # a definition error is raised here, before anything runs
    return _stream(process, mode, tokens, kwargs)


def _stream(process: Process, mode: Mode, tokens: bool,
            kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
    events: queue.Queue[Any] = queue.Queue()
    ended = threading.Event()

    async def main() -> None:
        try:
            await _drive(process, mode, tokens, kwargs, events.put)
        except BaseException as exc:
            events.put(exc)
            raise
        finally:
            events.put(_END)
            ended.set()

    job = asyncio.run_coroutine_threadsafe(main(), background_loop())
    try:
        while True:
            item = events.get()
            if item is _END:
                break
            if isinstance(item, asyncio.CancelledError):
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not job.done():
            job.cancel()  # the run is cancelled and winds down (its Supervisor says when)
            ended.wait(timeout=60)


async def astream(process: Process, mode: Mode = "workflow", *, tokens: bool = False,
                  **kwargs: Any) -> AsyncIterator[StreamEvent]:
    """See ``Process.astream``."""
    process.validate(mode)
    events: asyncio.Queue[Any] = asyncio.Queue()

    async def main() -> None:
        try:
            await _drive(process, mode, tokens, kwargs, events.put_nowait)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            events.put_nowait(exc)
        finally:
            events.put_nowait(_END)

    job = asyncio.ensure_future(main())
    try:
        while True:
            item = await events.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
