"""Attempts a member begins from a copy of their call, before the call itself arrives.

The Supervisor makes a member's ``run`` call, then sends a copy of its request on the
member's line (``ray_orch.core.line``): ~0.3 ms, where the call takes ~2-3 ms to reach a
member that idled through a model call. The attempt begins with whichever comes first,
once (``AttemptRequest.start`` is the key both carry); the call then returns that
attempt's outcome, and cancelling the call cancels the attempt.

A copy that does not come (no line, a request plain pickle cannot carry, the member on
another node) changes nothing: the call begins the attempt. When the Supervisor gives
up on a call (cancelled, failed, its member unreachable) it sends a cancel on the line
too, after the copy: it stops what the copy began (an attempt already finished is left
for its call), and a call that arrives after it ends cancelled instead of running. What
a copy began and no call claimed is cancelled when its run ends (``drop``, at unbind).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ray_orch.core.errors import RunCancelledError
from ray_orch.core.output import TaskOutput
from ray_orch.engine.messages import AttemptRequest

__all__ = ["Starts"]

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
        self.begun: dict[str, tuple[str, asyncio.Task[TaskOutput]]] = {}  # key: (run, job)
        self.seen: OrderedDict[str, bool] = OrderedDict()  # key: cancelled
        self.taken = 0  # calls that found their attempt begun by the copy (``info``)

    def copy(self, key: str, request: AttemptRequest) -> None:
        """A copy of a call: begin its attempt now, unless its call or a cancel came."""
        if key in self.seen or not isinstance(request, AttemptRequest):
            return
        self._saw(key)
        job = asyncio.ensure_future(self._run(request))
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # the call's to raise
        self.begun[key] = (request.run_id, job)

    def cancel(self, key: str, _: Any = None) -> None:
        """The Supervisor gave up on a call: stop what its copy began (one that finished
        is left for the call: its output stands), and a call still on its way ends
        cancelled."""
        self._saw(key, cancelled=True)
        begun = self.begun.get(key)
        if begun is not None and not begun[1].done():
            del self.begun[key]
            begun[1].cancel()

    async def call(self, request: AttemptRequest) -> TaskOutput:
        """The call's outcome: that of the attempt its copy began, or of a new one.

        Raises:
            RunCancelledError: the Supervisor had given up on this call before it came.
        """
        key = request.start
        if key is not None:
            begun = self.begun.pop(key, None)
            if begun is not None:
                self.taken += 1
                return await begun[1]  # (cancelling this call cancels it)
            if self.seen.get(key):
                raise RunCancelledError(f"task '{request.task_name}' was cancelled")
            self._saw(key)
        return await self._run(request)

    def drop(self, run_id: str) -> None:
        """The run ended: stop what copies of its calls began and no call claimed."""
        for key in [k for k, begun in self.begun.items() if begun[0] == run_id]:
            self.begun.pop(key)[1].cancel()

    def _saw(self, key: str, *, cancelled: bool = False) -> None:
        self.seen[key] = cancelled or self.seen.get(key, False)
        self.seen.move_to_end(key)
        while len(self.seen) > _SEEN:
            self.seen.popitem(last=False)
