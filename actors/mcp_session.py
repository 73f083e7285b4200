"""``MCPSessionActor``: the live MCP sessions of one node, shared by every agent actor there.

A stdio server is started once per node (not once per call, nor per member) and its
session kept open; HTTP servers get one session per node too. A session that dies is
started again on the next call (``SessionPool``: backoff and a bound). Agent actors
reach it by name (``session_actor``); it is created on first use, pinned to the
caller's node. A call streams the tool's progress notifications back before its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import ray

from ray_orch.core import trace
from ray_orch.tools.mcp import MCPCall, MCPReply, ProgressSink, call_in
from ray_orch.tools.mcp_connection import SessionPool

__all__ = ["SESSION_PREFIX", "MCPSessionActor", "node_sessions", "route_to_node_session",
           "session_actor"]

SESSION_PREFIX = "rayorch-mcp-"
"""Session actors are named ``rayorch-mcp-<node id prefix>``."""


@ray.remote(num_cpus=0)
class MCPSessionActor:
    """Holds the live sessions of this node (``SessionPool``, by ``MCP.key``)."""

    def __init__(self) -> None:
        self.pool = SessionPool()

    async def call(self, request: MCPCall) -> AsyncIterator[dict[str, Any] | MCPReply]:
        """Call one tool: yields ``{"progress", "total", "message"}`` as the server reports
        progress, then the ``MCPReply`` (where: this node and pid)."""
        from ray_orch.observe.tracing import configure

        if request.trace_settings:
            configure(request.trace_settings)
        updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def report(progress: float, total: float | None, message: str | None) -> None:
            updates.put_nowait({"progress": progress, "total": total, "message": message})

        with trace.attached(request.trace_context):
            job = asyncio.ensure_future(call_in(self.pool, request, report))
        try:
            while not job.done():
                waiter = asyncio.ensure_future(updates.get())
                await asyncio.wait({job, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    yield waiter.result()
                else:
                    waiter.cancel()
            while not updates.empty():
                yield updates.get_nowait()
            reply = job.result()
        finally:
            job.cancel()
        reply.where = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
        yield reply

    def info(self) -> dict[str, Any]:
        """This actor's pid, node and sessions (one row per server, ``SessionPool.info``)."""
        rows = self.pool.info()
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "sessions": rows, "started": sum(r["starts"] for r in rows)}

    async def close(self) -> None:
        """End every session (stops stdio servers)."""
        await self.pool.close()


def session_actor(node_id: str | None = None) -> Any:
    """The MCP session actor of a node (this one by default), created on first use."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = node_id or ray.get_runtime_context().get_node_id()
    return MCPSessionActor.options(  # type: ignore[attr-defined]
        name=f"{SESSION_PREFIX}{node[:16]}", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()


_handles: dict[str, Any] = {}


async def route_to_node_session(request: MCPCall,
                                progress: ProgressSink | None = None) -> MCPReply:
    """Call an MCP tool through this node's session actor (the port ``ray_orch.tools.mcp``
    calls; ``actors`` installs it). Failures come back as the session's own exception
    (``MCPSessionError``, ``MCPToolError``), not wrapped in Ray's."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

    for attempt in range(2):
        handle = _handles.get("node") or session_actor()
        _handles["node"] = handle
        try:
            stream = handle.call.options(num_returns="streaming").remote(request)
            async for ref in stream:
                item = await ref
                if isinstance(item, MCPReply):
                    return item
                if progress is not None:
                    progress(item["progress"], item.get("total"), item.get("message"))
            raise RuntimeError("the MCP session actor ended the call without a reply")
        except (ActorDiedError, ActorUnavailableError):
            _handles.pop("node", None)  # its owner went away: make it again, once
            if attempt:
                raise
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
    raise AssertionError("unreachable")


def node_sessions() -> list[dict[str, Any]]:
    """Every node's MCP sessions (for ``ray-orch status``): ``info()`` of each live
    session actor, in any namespace."""
    from ray.util import list_named_actors

    rows: list[Any] = []
    for entry in list_named_actors(all_namespaces=True):
        name, namespace = entry.get("name", ""), entry.get("namespace")
        if not name.startswith(SESSION_PREFIX):
            continue
        with contextlib.suppress(Exception):
            handle = ray.get_actor(name, namespace=namespace)
            rows.append(ray.get(handle.info.remote(), timeout=10))
    return rows
