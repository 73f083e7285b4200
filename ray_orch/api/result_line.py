"""A run's start and result on lines (``ray_orch.core.line``), beside the Supervisor's call.

The driver sends its Supervisor a copy of the ``run`` call just before making it: the run
begins with whichever arrives first, once (``Supervisor.run``'s ``start`` key).

A run's result comes from whichever comes first: the last item of its Supervisor's stream, or
the copy the Supervisor sends on the driver's line (``ray_orch.core.line``: ~0.2 ms where
a stream item takes ~2 ms once the driver has idled through the run).

The copy says how many items the Supervisor streamed before it: it is taken only once
every one of them has arrived, so no event is passed over. A copy that does not come
(the Supervisor on another machine, no line, a result plain pickle cannot carry) leaves
the stream's own item.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from ray_orch.core.line import Line, actor_line, open_inbox, usable
from ray_orch.core.sync import on_background_loop

__all__ = ["items", "result_line", "start_copy"]

_keys = itertools.count(1)


async def result_line(run_id: str) -> tuple[tuple[str, str] | None, asyncio.Future[Any] | None]:
    """``(line, key)`` for the Supervisor to send the result's copy to, and the future
    it resolves; ``(None, None)`` where there is no line. Only on the driver's long-lived
    event loop (the sync API's): a loop of the caller's own may end with its run, and a
    line opened there would stay behind it."""
    line = await open_inbox(f"d{os.getpid()}-{secrets.token_hex(6)}"
                            if on_background_loop() else None)
    if line is None or line.name is None:
        return None, None
    key = f"{run_id}:{next(_keys)}"
    return (line.name, key), line.expect(key)


def start_copy(supervisor: Any, packed: bytes, reply: tuple[str, str] | None) -> str | None:
    """Send the Supervisor a copy of the ``run`` call about to be made, on its line (it
    begins the run ~2 ms before the call arrives); the key that call then carries, or
    None if no copy went (no connection yet: one is opened for the next run)."""
    name = actor_line(supervisor)
    if name is None or not usable() or not on_background_loop():
        return None
    key = f"start:{os.getpid()}:{next(_keys)}:{secrets.token_hex(4)}"
    return key if Line.here().post(name, "start", key, (packed, reply)) else None


async def items(stream: Any, reply: tuple[str, str] | None, copy: asyncio.Future[Any] | None
                ) -> AsyncIterator[Awaitable[Any]]:
    """The stream's items as awaitables of ``(kind, payload)``; the ``result`` from the
    copy (sent to ``reply``), once it came and every item streamed before it arrived."""
    received = 0
    iterator = stream.__aiter__()
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            if copy is not None and not copy.done():
                await asyncio.wait((step, copy), return_when=asyncio.FIRST_COMPLETED)
            if copy is not None and copy.done() and received >= copy.result()[0]:
                yield _ready(copy.result()[1])  # (``step`` is cancelled below)
                return
            try:
                ref = await step
            except StopAsyncIteration:
                return
            received += 1
            yield ref
    finally:
        if step is not None and not step.done():
            step.cancel()  # (a cancelled follow: the stream's next item is not awaited)
        if reply is not None:
            Line.here().forget(reply[1])


async def _ready(value: Any) -> Any:
    return value
