"""``SharedServices``: the cluster services that attempts share across processes (circuit
breakers, rate limits, the embedded model's and the sentence encoder's per-node servers,
MCP sessions, remote tools' tracing), as one record
passed in, never installed by an import.

A run gets them in ``Services.shared`` (the Supervisor builds them with
``actors.cluster_services()``); they travel to members with the run's ``RunOptions``, and
a member runs each attempt ``using`` them. The layers that consume them (policy's
breakers, model's rate limits and embedded model, tools' MCP calls) read ``current()``:
what the attempt in progress uses (a ``ContextVar``: asyncio tasks and ``to_thread``
carry it), else this process's default, which is empty (everything in-process) unless a
driver that connected to Ray chose otherwise (``install``).

Example:
    >>> async def router(call, progress): ...
    >>> with using(SharedServices(mcp_router=router)):
    ...     current().mcp_router is router
    True
    >>> with using(SharedServices()):             # nothing shared: all in this process
    ...     current().mcp_router is None
    True
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SharedServices", "context_with", "current", "install", "installed", "using"]


@dataclass(kw_only=True, frozen=True)
class SharedServices:
    """Where shared state lives; each None: in the calling process. Each is a plain
    function (picklable by reference), so the record travels with a run."""

    breakers: Callable[[], Any] | None = None
    """Returns the cluster's breaker actor (``BreakerActor``): breaker state is shared
    by every member, run and node."""
    limiters: Callable[[str], Any] | None = None
    """Returns the ``RateLimiter`` actor of one model, by limiter name: rpm/tpm hold
    cluster-wide."""
    model_server: Callable[[], tuple[str, Any]] | None = None
    """Returns this node's id and its embedded model server (``ModelServer``): one model
    per node, not per process."""
    embedder: Callable[[], Any] | None = None
    """Returns this node's sentence-encoder service (``EmbeddingServer``): memory's
    offline encoder loaded once per node, concurrent requests encoded in one batch."""
    mcp_router: Callable[..., Awaitable[Any]] | None = None
    """Sends an MCP call (``tools.mcp.MCPCall``, and where its progress goes) to the
    node's session actor; returns its ``MCPReply``."""
    tool_scope: Callable[[Any, Any], Any] | None = None
    """A remote tool's tracing scope in its Ray worker: ``scope(settings, carrier)``, a
    context manager that sets tracing up there and exports the spans before returning."""


_LOCAL = SharedServices()
_current: contextvars.ContextVar[SharedServices | None] = contextvars.ContextVar(
    "ray_orch_shared_services", default=None)
_default = _LOCAL


def current() -> SharedServices:
    """The shared services of the work in progress (see the module's docstring)."""
    services = _current.get()
    return services if services is not None else _default


@contextlib.contextmanager
def using(services: SharedServices | None) -> Iterator[None]:
    """Run the block (and the tasks it starts) with ``services``; None changes nothing."""
    if services is None:
        yield
        return
    token = _current.set(services)
    try:
        yield
    finally:
        _current.reset(token)


def context_with(services: SharedServices | None) -> contextvars.Context:
    """A copy of the current context in which ``current()`` is ``services`` (for a task
    started with ``loop.create_task(..., context=...)``)."""
    context = contextvars.copy_context()
    if services is not None:
        context.run(_current.set, services)
    return context


def installed() -> SharedServices:
    """This process's default (what ``install`` set; empty otherwise)."""
    return _default


def install(services: SharedServices | None) -> None:
    """Make ``services`` this process's default (None: back to in-process). Only an
    explicit call does this (a driver that connected to Ray: ``ensure_ray``); no import
    does."""
    global _default
    _default = services if services is not None else _LOCAL
