"""Warm processes for remote tools that reserve nothing (``@tool(remote=True, num_cpus=0)``).

A Ray task pays for a worker lease on every call: the owner asks the raylet for a worker,
the raylet grants one, the call goes to it (3.4 ms over a local call here, where a call
on an actor that is already up costs 2.1 ms). A tool that asks Ray for no resources gives
Ray nothing to schedule, so a process keeps warm processes of its own for such tools
(``ToolHost`` actors, one call at a time each, like a task's worker) and sends a call to
one that is free. When none is free the call goes as a Ray task, as before, and one more
host starts in the background, up to ``RAY_ORCH_TOOL_HOSTS`` (2) per process and
``runtime_env`` (0: never). So no call waits for a host to start, and a burst of calls
runs in parallel as tasks. A host that sat idle ``RAY_ORCH_TOOL_HOST_IDLE`` seconds (60)
exits.

Same as a task: the call runs in another process, with the tool's ``runtime_env``, is
never retried (``max_restarts=0``), what it prints comes back with its value, and it runs
the function its own run sent (each call carries the pickled body; a host unpickles a body
once and keeps the last few by digest). A call that is cancelled (the tool's ``timeout``,
a cancelled run) kills its host, so the tool stops; a later call starts another. A tool
that reserves CPUs, GPUs or custom resources stays a Ray task on every call: Ray holds
those resources only while a call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .spec import ToolSpec

__all__ = ["HostPool", "ToolHost", "hostable", "pool"]

_MAX = int(os.environ.get("RAY_ORCH_TOOL_HOSTS", "2"))
_IDLE = float(os.environ.get("RAY_ORCH_TOOL_HOST_IDLE", "60"))
_BODIES = 16  # tool bodies a host keeps unpickled


def hostable(spec: ToolSpec) -> bool:
    """Whether calls of this remote tool may go to a warm host: it reserves nothing."""
    o = spec.options
    return _MAX > 0 and o.num_cpus == 0 and not o.num_gpus and not o.resources


class ToolHost:
    """One warm process for remote tools: runs a call at a time (``call``: the body a Ray
    task of the tool would run)."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, Any] = {}

    def ready(self) -> int:
        """The host's pid, once it is up."""
        return os.getpid()

    def call(self, packed: tuple[Any, ...]) -> Any:
        """One call: ``(digest, pickled body, *args, services)``; the body is unpickled once
        and kept by its digest. (One argument: Ray serializes each argument apart.)"""
        digest, pickled, *args, services = packed
        body = self.bodies.pop(digest, None)
        if body is None:
            body = sys.modules["ray"].cloudpickle.loads(pickled)
        self.bodies[digest] = body  # the most recently used last
        if len(self.bodies) > _BODIES:
            del self.bodies[next(iter(self.bodies))]
        return body(*args, services=services)


@dataclass
class HostPool:
    """This process's hosts for one set of actor options (a ``runtime_env`` or none)."""

    options: dict[str, Any]
    """The actor's options besides the fixed ones (``runtime_env``)."""
    idle: list[tuple[Any, float]] = field(default_factory=list)
    """Hosts free for a call, with when each was last used."""
    hosts: int = 0
    """Hosts alive or starting."""
    broken: bool = False
    """A host failed to start: calls stay Ray tasks."""

    def take(self) -> Any | None:
        """A free host (or None: send the call as a task), starting one more if allowed."""
        if self.idle:
            return self.idle.pop()[0]
        if not self.broken and self.hosts < _MAX:
            self.hosts += 1
            asyncio.get_running_loop().create_task(self._start())
        return None

    def give_back(self, host: Any) -> None:
        """A host whose call ended normally: free again, until it sits idle too long."""
        self.idle.append((host, time.monotonic()))
        asyncio.get_running_loop().call_later(_IDLE, self._reap)

    def lose(self, host: Any) -> None:
        """A host whose call was cancelled or that died: killed, never used again."""
        self.hosts -= 1
        with contextlib.suppress(Exception):  # already gone, or Ray shut down
            sys.modules["ray"].kill(host, no_restart=True)

    async def _start(self) -> None:
        if not _actor_class:
            _actor_class.append(sys.modules["ray"].remote(ToolHost))
        host = _actor_class[0].options(num_cpus=0, max_restarts=0, max_task_retries=0,
                                       **self.options).remote()
        try:
            await host.ready.remote()
        except asyncio.CancelledError:  # this event loop is closing
            self.lose(host)
            raise
        except Exception:  # a runtime_env that cannot be set up, a node gone
            self.broken = True
            self.lose(host)
            return
        self.give_back(host)

    def _reap(self) -> None:
        now = time.monotonic()
        for entry in [e for e in self.idle if now - e[1] >= _IDLE]:
            self.idle.remove(entry)
            self.lose(entry[0])


_actor_class: list[Any] = []
_pools: dict[str, HostPool] = {}


def pool(spec: ToolSpec) -> HostPool:
    """This process's hosts for a tool's calls (one pool per ``runtime_env``)."""
    env = spec.options.runtime_env
    key = json.dumps(env, sort_keys=True, default=str) if env else ""
    found = _pools.get(key)
    if found is None:
        found = _pools[key] = HostPool(options={"runtime_env": dict(env)} if env else {})
    return found
