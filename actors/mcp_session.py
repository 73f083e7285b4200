"""``MCPSessionActor``: the live MCP sessions of one node, shared by every agent actor there.

A stdio server is started once per node (not once per call, nor per member) and its
session kept open; HTTP servers get one session per node too. Agent actors reach it
by name (``session_actor``); it is created on first use, pinned to the caller's node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import ray

from ray_orch.tools.mcp import MCP, MCPConnection

__all__ = ["MCPSessionActor", "route_to_node_session", "session_actor"]


@ray.remote(num_cpus=0)
class MCPSessionActor:
    """Holds one ``MCPConnection`` per server (by ``MCP.key``) on this node."""

    def __init__(self) -> None:
        self.connections: dict[str, MCPConnection] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.started = 0

    async def _connection(self, server: MCP) -> MCPConnection:
        lock = self.locks.setdefault(server.key, asyncio.Lock())
        async with lock:
            connection = self.connections.get(server.key)
            if connection is None or not connection.alive:
                connection = MCPConnection(server)
                await connection.start()  # ToolDefinitionError (with stderr) if it cannot
                self.connections[server.key] = connection
                self.started += 1
            return connection

    async def call(self, server: MCP, tool: str,
                   arguments: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
        """Call one tool; ``(ok, text, where)`` (where: this node and pid)."""
        connection = await self._connection(server)
        ok, text = await connection.call(tool, arguments)
        return ok, text, {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def info(self) -> dict[str, Any]:
        """This actor's pid, node, open sessions and how many servers it started."""
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "sessions": sorted(k for k, c in self.connections.items() if c.alive),
                "started": self.started}

    async def close(self) -> None:
        """End every session (stops stdio servers)."""
        for connection in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await connection.close()
        self.connections.clear()


def session_actor(node_id: str | None = None) -> Any:
    """The MCP session actor of a node (this one by default), created on first use."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = node_id or ray.get_runtime_context().get_node_id()
    return MCPSessionActor.options(  # type: ignore[attr-defined]
        name=f"rayorch-mcp-{node[:16]}", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()


_handles: dict[str, Any] = {}


async def route_to_node_session(server: MCP, tool: str,
                                arguments: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """Call an MCP tool through this node's session actor (the port ``ray_orch.tools.mcp``
    calls; ``actors`` installs it)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    for attempt in range(2):
        handle = _handles.get("node") or session_actor()
        _handles["node"] = handle
        try:
            return await handle.call.remote(server, tool, arguments)  # type: ignore[no-any-return]
        except (ActorDiedError, ActorUnavailableError):
            _handles.pop("node", None)  # its owner went away: make it again, once
            if attempt:
                raise
    raise AssertionError("unreachable")
