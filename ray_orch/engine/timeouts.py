"""A task's timeout: counted from when a member takes the task and is up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from ray_orch.core.output import TaskOutput

__all__ = ["TimeoutClock"]

# How long a task's timeout waits for a new member to come up before it starts anyway.
_STARTUP_ALLOWANCE = 60.0


class TimeoutClock:
    """A task's timeout, counted from when a member takes the task and is up (time
    spent waiting for a free slot, a member's process start and its litellm import do
    not count); ``start`` again (a fallback agent, a retry elsewhere) changes nothing."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = False
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None
        self.job: asyncio.Future[Any] | None = None

    def start(self, ready: asyncio.Future[Any] | None = None) -> None:
        if not self.seconds or self.started:
            return
        self.started = True
        if ready is None or ready.done():
            self._arm()
        else:
            # A member that never comes up (resources no node has) must not hold the
            # task forever: its start-up may take this long at most.
            cap = asyncio.get_running_loop().call_later(_STARTUP_ALLOWANCE, self._arm)

            def up(_: asyncio.Future[Any]) -> None:
                cap.cancel()
                self._arm()

            ready.add_done_callback(up)

    def _arm(self) -> None:
        if self.timer is None and self.seconds and (self.job is None or not self.job.done()):
            self.timer = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.job is not None:
            self.job.cancel()

    async def run(self, coro: Awaitable[TaskOutput]) -> TaskOutput:
        """Await ``coro``; raises ``asyncio.TimeoutError`` when the clock ran out."""
        if not self.seconds:
            return await coro
        self.job = asyncio.ensure_future(coro)
        if self.expired:
            self.job.cancel()
        try:
            await asyncio.wait({self.job})  # a cancel of this task lands here, not in job
        except asyncio.CancelledError:
            self.job.cancel()
            await asyncio.wait({self.job})  # let it wind down (it cancels remote work)
            raise
        finally:
            if self.timer is not None:
                self.timer.cancel()
        if self.job.cancelled() and self.expired:
            raise asyncio.TimeoutError
        return self.job.result()
