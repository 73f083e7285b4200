"""How the Supervisor takes an attempt's reply.

An attempt's output comes from whichever comes first: its call's reply, or the copy its member
sends on the Supervisor's line (``ray_orch.core.line``: ~0.2 ms where the reply takes ~2 ms
once the Supervisor has idled through a model call).

The copy is only ever a success's output, sent as the member's call returns it; a
failure, a cancel or a lost member come by the call as before. A copy that does not come
(another node, no line, a value plain pickle cannot carry) leaves the call's reply.

A cancelled attempt's call is cancelled too; in a run's wind-down its reply is still
awaited a while, so that an output its member had finished is kept (``cancelled``).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray_orch.core.line import actor_line, first_of
from ray_orch.core.output import TaskOutput

if TYPE_CHECKING:
    from ray_orch.engine.ports import Remote

__all__ = ["FinishedBeforeCancel", "Replies", "cancelled", "first"]

_numbers = itertools.count(1)
# How long a cancelled attempt's reply is awaited in a wind-down (a hung member must not
# hold up the cancel).
_LATE_REPLY_S = 5.0


class FinishedBeforeCancel(asyncio.CancelledError):
    """An attempt was cancelled after its member had finished it: ``output`` stands."""

    def __init__(self, output: TaskOutput) -> None:
        super().__init__("the attempt had finished before it was cancelled")
        self.output = output


async def cancelled(remote: Remote, ref: Any, *, keep_late: bool) -> None:
    """Cancel the attempt ``ref``; in a wind-down (``keep_late``), raise
    ``FinishedBeforeCancel`` if its reply shows it had finished first."""
    remote.cancel(ref)
    if not keep_late:
        return
    try:
        output = await asyncio.wait_for(ref, _LATE_REPLY_S)
    except (Exception, asyncio.CancelledError):  # stopped, failed or too slow: no output
        return
    if isinstance(output, TaskOutput):
        raise FinishedBeforeCancel(output)


@dataclass(kw_only=True, eq=False)
class Replies:
    """Where one run's output copies arrive: the Supervisor's line (``Line``: ``name``,
    ``expect(key)``, ``forget(key)``)."""

    line: Any
    run_id: str

    def key(self, token: str | None = None) -> str:
        """A reply key unique in this process: a hand-off's from its token (its sender
        and its adopter both know it), any other send's from a counter."""
        return f"{self.run_id}:{token if token is not None else f'#{next(_numbers)}'}"

    def begin(self, member: Any, request: Any) -> None:
        """Send ``member`` a copy of the ``run`` call just made with ``request``: the
        attempt begins when the first of the two arrives (``engine/starts.py``)."""
        name = actor_line(member)
        if name is not None and request.start is not None:
            self.line.post(name, "run", request.start, request)

    def unbegin(self, member: Any, start: str | None) -> None:
        """The call with ``start`` was given up on (cancelled, failed, its member lost):
        what its copy began stops too."""
        name = actor_line(member)
        if name is not None and start is not None:
            self.line.post(name, "unrun", start, None)


async def first(replies: Replies | None, ref: Any, key: str | None) -> Any:
    """The result of the call ``ref``, or of its copy under ``key`` if that comes first.

    Example:
        >>> class Line:
        ...     waiting = {}
        ...     def expect(self, key):
        ...         return self.waiting.setdefault(key, asyncio.get_running_loop().create_future())
        ...     def forget(self, key):
        ...         self.waiting.pop(key, None)
        >>> async def demo():
        ...     line, call = Line(), asyncio.get_running_loop().create_future()
        ...     replies = Replies(line=line, run_id="r")
        ...     later = asyncio.ensure_future(first(replies, call, "r:1"))
        ...     await asyncio.sleep(0)
        ...     line.waiting["r:1"].set_result("copy")
        ...     return await later, call.cancelled()
        >>> asyncio.run(demo())
        ('copy', False)
    """
    if replies is None or key is None:
        return await ref
    return await first_of(replies.line, ref, key)
