"""``Process.stream()`` and ``astream()``: a run's events, live, as ``StreamEvent``s.

They take a ``RunDriver`` (``Process.driver(mode)``: validated, not started) and run it
through its public API (``run(live=...)``, ``result``). The run goes as ``workflow()``
runs it, with two differences: its Supervisor sends events
as they happen instead of every 0.1 s, and each event is also turned into the public
schema (``ray_orch.core.stream``) and handed to the caller. Closing the iterator early
cancels the run, which winds down before the iterator returns.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ray_orch.api.driver import RunDriver
from ray_orch.core.errors import RayOrchError, RunError
from ray_orch.core.events import Event
from ray_orch.core.stream import StreamEvent, to_stream
from ray_orch.core.sync import background_loop

__all__ = ["astream", "stream"]

_END = object()


async def _drive(driver: RunDriver, put: Callable[[Any], None]) -> None:
    """Run the driver's run, handing every public event to ``put``, and its end."""

    def live(event: Event) -> None:
        for public in to_stream(event):
            put(public)

    try:
        results = await driver.run(live=live)
    except asyncio.CancelledError:
        raise
    except RunError as exc:
        for event in _skipped(driver):
            put(event)
        put(StreamEvent(kind="run_failed", **_ids(driver), error=str(exc),
                        error_type=type(exc).__name__, results=dict(exc.results or {})))
    except RayOrchError:
        raise  # a definition error: raised to the caller, nothing ran
    else:
        for event in _skipped(driver):
            put(event)
        put(StreamEvent(kind="run_completed", **_ids(driver), results=results))


def _ids(driver: RunDriver) -> dict[str, Any]:
    result = driver.result
    return {"run_id": result.run_id if result else "", "workflow": driver.spec.workflow}


def _skipped(driver: RunDriver) -> list[StreamEvent]:
    result = driver.result
    if result is None:
        return []
    return [StreamEvent(kind="task_skipped", **_ids(driver), task=name,
                        error=result.skip_reasons.get(name))
            for name, status in result.statuses.items() if status == "skipped"]


def stream(driver: RunDriver) -> Iterator[StreamEvent]:
    """Run ``driver``'s run and yield its events as they happen (see ``Process.stream``);
    breaking out of the loop cancels the run."""
    return _stream(driver)


def _stream(driver: RunDriver) -> Iterator[StreamEvent]:
    events: queue.Queue[Any] = queue.Queue()
    ended = threading.Event()

    async def main() -> None:
        try:
            await _drive(driver, events.put)
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


async def astream(driver: RunDriver) -> AsyncIterator[StreamEvent]:
    """Async form of ``stream()`` (see ``Process.astream``)."""
    events: asyncio.Queue[Any] = asyncio.Queue()

    async def main() -> None:
        try:
            await _drive(driver, events.put_nowait)
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
