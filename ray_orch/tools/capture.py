"""What a tool prints inside a Ray worker, kept with its call instead of Ray's log stream.

Ray copies a worker's stdout to the driver prefixed ``(AgentActor pid=N)``, deduplicated
and late. A tool call in a Ray worker (an agent's actor, or a Ray task for a remote tool)
prints into a buffer of its own instead (``captured``); the text travels with the call
(``ToolCall.stdout``), and the driver prints it, in order, as the call's event arrives.
Outside a Ray worker (``Task.execute()`` on the driver) prints go straight to stdout.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_CAPTURED", "captured", "in_ray_worker", "text_of"]

MAX_CAPTURED = 64 * 1024
"""Characters of one call's output kept (the rest is cut, with a note)."""

_sink: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "ray_orch_tool_stdout", default=None)
_installed = threading.Lock()


class _Router:
    """``sys.stdout`` in a Ray worker: a write goes to the buffer of the tool call whose
    context it runs in, else to the real stdout."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return int(self.real.write(text) or 0)
        sink.append(text)
        return len(text)

    def flush(self) -> None:
        if _sink.get() is None:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


_worker: list[bool] = []  # [True] once this process was seen to be a Ray worker


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (an actor or a task), not a driver."""
    if _worker:  # a worker stays one (asking Ray costs ~40 us a call)
        return True
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        context = ray.get_runtime_context()
        found = bool(context.get_actor_id() or context.get_task_id())
    except Exception:
        return False
    if found:
        _worker.append(True)
    return found


def _install() -> None:
    with _installed:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)


@contextlib.contextmanager
def captured() -> Iterator[list[str] | None]:
    """Within the block (and in contexts copied from it), prints go to the yielded list
    when this is a Ray worker; elsewhere nothing changes and None is yielded."""
    if not in_ray_worker():
        yield None
        return
    _install()
    buffer: list[str] = []
    token = _sink.set(buffer)
    try:
        yield buffer
    finally:
        _sink.reset(token)


def text_of(buffer: list[str] | None) -> str:
    """The captured text, cut to ``MAX_CAPTURED`` characters."""
    text = "".join(buffer or [])
    if len(text) > MAX_CAPTURED:
        return text[:MAX_CAPTURED] + f"\n[... {len(text) - MAX_CAPTURED} more characters]\n"
    return text
