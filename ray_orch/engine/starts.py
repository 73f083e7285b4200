"""Attempts a member begins from a copy of their call, before the call itself arrives.

The Supervisor makes a member's ``run`` call, then sends a copy of its request on the
member's line (``ray_orch.core.line``): ~0.3 ms, where the call takes ~2-3 ms to reach a
member that idled through a model call. The attempt begins with whichever comes first,
once (``AttemptRequest.start`` is the key both carry); the call then returns that
attempt's outcome, and cancelling the call cancels the attempt.

A copy that does not come (no line, a request plain pickle cannot carry, the member on
another node) changes nothing: the call begins the attempt. A cancel may reach the member
before the call (a run cancelled at once): the Supervisor then sends one on the line
too, after the copy, and it stops what the copy began, or keeps a later copy from
beginning it. A copy whose call never comes is cancelled after ``_ORPHANED_S``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ray_orch.core.output import TaskOutput
from ray_orch.engine.messages import AttemptRequest

__all__ = ["Starts"]

_ORPHANED_S = 60.0
_SEEN = 1024  # start keys remembered (a late copy of one must not begin it again)


class Starts:
    """One member's attempts begun by copies (``copy`` / ``cancel`` are its line's
    handlers; ``call`` is its ``run`` call's body).

    Args:
        run: runs one attempt (the member's ``run`` without this).

    Example:
        >>> async def demo():
        ...     runs = []
        ...     async def run(request):
        ...         runs.append(request.task_name)
        ...         return request.task_name
        ...     starts = Starts(run)
        ...     request = AttemptRequest(run_id="r", agent_key="a", task_name="t", start="k")
        ...     starts.copy("k", request)      # the copy comes first: it begins
        ...     out = await starts.call(request)  # the call takes what it began
        ...     starts.copy("k", request)      # a late copy again: ignored
        ...     await asyncio.sleep(0)
        ...     return out, runs, starts.taken
        >>> asyncio.run(demo())
        ('t', ['t'], 1)
    """

    def __init__(self, run: Callable[[AttemptRequest], Awaitable[TaskOutput]]) -> None:
        self._run = run
        self.begun: dict[str, asyncio.Task[TaskOutput]] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.taken = 0  # calls that found their attempt begun by the copy (``info``)

    def copy(self, key: str, request: AttemptRequest) -> None:
        """A copy of a call: begin its attempt now, unless its call or a cancel came."""
        if key in self.seen or not isinstance(request, AttemptRequest):
            return
        self._saw(key)
        job = self.begun[key] = asyncio.ensure_future(self._run(request))
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # the call's to raise
        asyncio.get_running_loop().call_later(_ORPHANED_S, self.cancel, key)

    def cancel(self, key: str, _: Any = None) -> None:
        """The Supervisor gave up on a call: stop what its copy began, or keep a copy
        still on its way from beginning it."""
        job = self.begun.pop(key, None)
        if job is None:
            self._saw(key)
        else:
            job.cancel()

    async def call(self, request: AttemptRequest) -> TaskOutput:
        """The call's outcome: that of the attempt its copy began, or of a new one."""
        key = request.start
        if key is not None:
            job = self.begun.pop(key, None)
            if job is not None:
                self.taken += 1
                return await job  # (cancelling this call cancels it)
            self._saw(key)
        return await self._run(request)

    def _saw(self, key: str) -> None:
        self.seen[key] = None
        while len(self.seen) > _SEEN:
            self.seen.popitem(last=False)
