"""Where a remote tool's call runs: a Ray task, or a warm process for tools that reserve
nothing (``@tool(remote=True, num_cpus=0)``).

A Ray task pays for a worker lease on every call: the caller asks the raylet for a
worker, the raylet grants one, the call goes to it (3.4 ms over a local call here, where
a call on an actor that is already up costs 2.1 ms). A tool that asks Ray for no
resources gives Ray nothing to schedule, so an agent's member keeps warm processes for
such tools (``ToolHost`` actors on its node, one call at a time each, like a task's
worker) and sends a call to one that is free. When none is free the call goes as a Ray
task and one more host starts in the background (one at a time), up to
``RAY_ORCH_TOOL_HOSTS`` (2) per member and ``runtime_env`` (0: never). So no call waits
for a host to start, and a burst of calls runs in parallel as tasks. A host idle
``RAY_ORCH_TOOL_HOST_IDLE`` seconds (60) exits. (Both are read where the members run:
set them before the runtime starts.) Outside a Ray worker (a driver's
``Task.execute()``, whose event loops may be short-lived) every call is a task.

Either way a call runs the function its own run sent: a ``Body`` (the call's body
pickled once per function object, by digest; a large one goes through Ray's object
store once) travels with each call, and a task's worker or a host unpickles it once and
keeps the last few. A host is sent only the digest of a body it has. A call is never
retried; a call cancelled on a host (the tool's ``timeout``, a cancelled run) kills the
host, so the tool stops (a task gets ``ray.cancel``). A tool that reserves CPUs, GPUs
or custom resources is a Ray task on every call: Ray holds them only while it runs.
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

from ray_orch.core.line import send_blocking

from .spec import ToolSpec

__all__ = ["Body", "HostPool", "ToolHost", "body_of", "hostable", "pool"]

_MAX = int(os.environ.get("RAY_ORCH_TOOL_HOSTS", "2"))
_IDLE = float(os.environ.get("RAY_ORCH_TOOL_HOST_IDLE", "60"))
_RETRY_S = 30.0  # after a host failed to start, calls stay tasks this long
_KEPT_BODIES = 16  # bodies a worker or host keeps unpickled


@dataclass(frozen=True)
class Body:
    """A call's body, pickled: ``data`` inline, or ``ref`` to it in the object store
    (inside this record, so Ray does not fetch it for a host that has it)."""

    digest: bytes
    data: bytes | None = None
    ref: Any = None

    def bare(self) -> Body:
        """The digest alone (for a host that has unpickled this body already)."""
        return Body(self.digest)


_loaded: dict[bytes, Any] = {}


def body_of(body: Body) -> Any:
    """The callable a ``Body`` holds, unpickled once per process (the last few kept)."""
    ray = sys.modules["ray"]
    found = _loaded.pop(body.digest, None)
    if found is None:
        data = body.data if body.data is not None else ray.get(body.ref)
        found = ray.cloudpickle.loads(data)
    _loaded[body.digest] = found  # the most recently used last
    if len(_loaded) > _KEPT_BODIES:
        del _loaded[next(iter(_loaded))]
    return found


def run_body(body: Body, *args: Any, services: Any = None) -> Any:
    """A remote call: the body's function with the call's arguments (the Ray task)."""
    return body_of(body)(*args, services=services)


def hostable(spec: ToolSpec) -> bool:
    """Whether calls of this remote tool may go to a warm host: it reserves nothing."""
    o = spec.options
    return _MAX > 0 and o.num_cpus == 0 and not o.num_gpus and not o.resources


class ToolHost:
    """One warm process for remote tools: a call at a time (one argument: Ray
    serializes each argument apart)."""

    def ready(self) -> int:
        """The host's pid, once it is up."""
        return os.getpid()

    def call(self, packed: tuple[Any, ...], reply: tuple[str, str] | None = None) -> Any:
        """``(body, *args, services)``: what ``run_body`` runs for a task. With ``reply``
        (the member's line and a key), a copy of the result goes there first (it takes
        whichever comes first: ``core.line.first_of``)."""
        body, *args, services = packed
        result = run_body(body, *args, services=services)
        if reply is not None:
            send_blocking(reply[0], "reply", reply[1], result)
        return result


@dataclass(eq=False)
class Host:
    """A host and the bodies it has unpickled (it is sent only their digests)."""

    handle: Any
    has: set[bytes] = field(default_factory=set)
    used: float = 0.0


@dataclass(eq=False)
class HostPool:
    """A member's hosts for one ``runtime_env`` (or none), used on one event loop."""

    options: dict[str, Any]
    """The actor's options besides the fixed ones (``runtime_env``)."""
    loop: asyncio.AbstractEventLoop
    idle: list[Host] = field(default_factory=list)
    hosts: int = 0
    """Hosts alive or starting."""
    starting: asyncio.Task[None] | None = None
    retry_at: float = 0.0
    reaping: asyncio.TimerHandle | None = None

    def take(self) -> Host | None:
        """A free host (None: send the call as a task), starting one more if allowed."""
        if self.idle:
            return self.idle.pop()
        if (self.starting is None and self.hosts < _MAX
                and time.monotonic() >= self.retry_at):
            self.hosts += 1
            self.starting = self.loop.create_task(self._start())
        return None

    def give_back(self, host: Host) -> None:
        """A host whose call ended normally: free again, until it sits idle too long."""
        host.used = time.monotonic()
        self.idle.append(host)
        if self.reaping is None:
            self.reaping = self.loop.call_later(_IDLE, self._reap)

    def lose(self, host: Host) -> None:
        """A host whose call was cancelled or that died: killed, never used again."""
        self.hosts -= 1
        with contextlib.suppress(Exception):  # already gone, or Ray shut down
            sys.modules["ray"].kill(host.handle, no_restart=True)

    async def _start(self) -> None:
        ray = sys.modules["ray"]
        host = None
        try:
            if not _actor_class:
                _actor_class.append(ray.remote(ToolHost))
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()  # dies with the member's node
            host = Host(_actor_class[0].options(
                num_cpus=0, max_restarts=0, max_task_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
                **self.options).remote())
            await host.handle.ready.remote()
        except BaseException as exc:  # a runtime_env that cannot be set up; Ray gone
            if host is None:
                self.hosts -= 1
            else:
                self.lose(host)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.retry_at = time.monotonic() + _RETRY_S
        else:
            self.give_back(host)
        finally:
            self.starting = None

    def _reap(self) -> None:
        self.reaping = None
        now = time.monotonic()
        for host in [h for h in self.idle if now - h.used >= _IDLE]:
            self.idle.remove(host)
            self.lose(host)
        if self.idle:
            self.reaping = self.loop.call_later(
                max(0.0, _IDLE - (now - min(h.used for h in self.idle))), self._reap)


_actor_class: list[Any] = []
_pools: dict[str, HostPool] = {}


def pool(spec: ToolSpec) -> HostPool | None:
    """The calling member's hosts for a tool's calls (one pool per ``runtime_env``), or
    None: not in a Ray worker, or not on the loop the pool serves."""
    from .capture import in_ray_worker

    if not in_ray_worker():
        return None
    env = spec.options.runtime_env
    key = json.dumps(env, sort_keys=True, default=str) if env else ""
    loop = asyncio.get_running_loop()
    found = _pools.get(key)
    if found is None:
        found = _pools[key] = HostPool(options={"runtime_env": dict(env)} if env else {},
                                       loop=loop)
    return found if found.loop is loop else None
