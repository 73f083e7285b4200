"""Sync callers of async code: one long-lived event loop in a background thread.

litellm keeps clients and a logging worker bound to the loop they were created on, so a
fresh ``asyncio.run()`` per call would leave them behind (and warn) every time; the
driver's sync API (``Process.workflow()``, ``Task.execute()``, ``Agent.chat()``) runs its
coroutines here instead.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from typing import Any

__all__ = ["background_loop", "in_daemon_thread", "on_background_loop", "run_in_thread",
           "run_sync"]


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    # One long-lived loop for sync callers: litellm keeps clients and a logging worker
    # bound to the loop they were created on, so a fresh asyncio.run() per call would
    # leave them behind (and warn) every time.
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="ray-orch-loop",
                             daemon=True).start()
            atexit.register(_stop_background_loop, _loop)
        return _loop


def _stop_background_loop(loop: asyncio.AbstractEventLoop) -> None:
    # Let what still runs there (litellm's logging worker, HTTP sessions) end cleanly at
    # exit, instead of being destroyed while pending.
    async def finish() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_asyncgens()  # closes HTTP sessions

    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)


def on_background_loop() -> bool:
    """Whether the running event loop is the long-lived one (``background_loop``)."""
    try:
        return _loop is not None and asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even under a running event loop."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    # Called from a coroutine on the background loop itself: it cannot wait on its own
    # loop, so this one call gets a thread and a loop of its own.
    return run_in_thread(coro, name="ray-orch-execute")


def run_in_thread(coro: Any, *, name: str) -> Any:
    """Run a coroutine to completion in a new thread with an event loop of its own (for
    callers that may be inside a running loop); its result, or its exception raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def in_daemon_thread(fn: Any, *args: Any, name: str = "ray-orch-call") -> Any:
    """``fn(*args)`` in a daemon thread of its own, awaited: unlike ``asyncio.to_thread``
    (whose pool's threads the interpreter joins at exit), a call that blocks forever (a
    console prompt, a person's handler) never keeps the process from exiting on Ctrl-C.

    Example:
        >>> asyncio.run(in_daemon_thread(sum, [1, 2, 3]))
        6
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(error: BaseException | None, value: Any) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)

    def target() -> None:
        try:
            value = fn(*args)
        except BaseException as exc:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, exc, None)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, None, value)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await done
