"""MCP servers as tools, through the official ``mcp`` SDK.

``MCP("command args")`` starts a server over stdio; ``MCP("http://host:port/mcp")``
connects over streamable HTTP. ``MCP`` is picklable configuration: the tools it lists
(listed once, on the driver, when the workflow is validated) travel with it, and live
sessions exist only where calls are made: in the node's ``MCPSessionActor``
(``actors/mcp_session.py``) on a cluster, or in this process (``Task.execute()``).
Sessions heal: see ``mcp_connection.py``.

Several servers: ``MCP(..., prefix="repo_a")`` offers the server's tools as
``repo_a_<tool>`` (the joiner is ``PREFIX_JOINER``, an underscore: OpenAI tool names
allow ``[a-zA-Z0-9_-]``); the server is still called with its own names.

Tool annotations are honoured: a ``readOnlyHint`` tool has no side effects, so a retried
attempt or a resumed run simply calls it again (fresh results); any other tool's result
is journaled and reused (not run twice) unless ``replay=False``. With
``approve_destructive=True`` a tool the server does not mark read-only and
non-destructive (``destructiveHint`` is true by default in the MCP spec) needs a
person's approval for each call. Tools whose ``execution.taskSupport`` is ``required``
are not offered (ray-orch does not run MCP tasks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ray_orch.core import shared
from ray_orch.core.errors import ToolDefinitionError
from ray_orch.core.sync import run_in_thread

from .mcp_connection import MCPConnection, SessionPool, tool_entry
from .mcp_content import ToolImage

__all__ = ["MCP", "PREFIX_JOINER", "MCPReply", "local_call", "route_call", "set_mcp_router",
           "tool_entry"]

PREFIX_JOINER = "_"
"""What joins a prefix and a tool's name: ``MCP(..., prefix="a")`` offers ``a_<tool>``."""


class MCP:
    """An MCP server whose tools are offered to the model.

    Args:
        target: ``"command args"`` to start a server over stdio, or the URL of a
            streamable HTTP endpoint (``"http://127.0.0.1:8000/mcp"``).
        env: environment variables of a stdio server, on top of the MCP SDK's safe
            default (``HOME``, ``PATH``, ``SHELL``, ``TERM``, ``USER``); nothing else of
            the driver's environment reaches the server.
        cwd: working directory of a stdio server (default: this process's, where it
            exists on the node that starts the server).
        name: a label for messages (default: the target).
        startup_timeout: seconds to start the server and list its tools.
        timeout: seconds per tool call (None: no limit).
        prefix: offer the tools as ``<prefix>_<tool>`` (two instances of one server).
        headers: HTTP headers of every request (``{"Authorization": "Bearer ..."}``);
            never printed.
        replay: reuse the journaled result of an identical call of a tool that is not
            read-only on a retried attempt or a resumed run (False: always call again).
        approve_destructive: a person approves each call of a tool that may be
            destructive (see the module docstring).

    Example:
        >>> server = MCP("python examples/mcp_orders_server.py", prefix="orders")
        >>> server.transport, server.command, server.tool_name("lookup_order")
        ('stdio', 'python', 'orders_lookup_order')
        >>> MCP("http://127.0.0.1:8765/mcp", headers={"Authorization": "Bearer x"})
        MCP('http://127.0.0.1:8765/mcp')
    """

    def __init__(self, target: str, *, env: dict[str, str] | None = None,
                 cwd: str | None = None, name: str | None = None,
                 startup_timeout: float = 30.0, timeout: float | None = None,
                 prefix: str | None = None, headers: dict[str, str] | None = None,
                 replay: bool = True, approve_destructive: bool = False) -> None:
        if not isinstance(target, str) or not target.strip():
            raise ToolDefinitionError(f"MCP needs a command or a URL, not {target!r}",
                                      field="tools")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.strip() or
                                   not all(c.isalnum() or c in "_-" for c in prefix)):
            raise ToolDefinitionError(f"MCP prefix must be letters, digits, '_' or '-', not "
                                      f"{prefix!r}", field="prefix")
        self.target = target.strip()
        self.transport = "http" if self.target.startswith(("http://", "https://")) else "stdio"
        if headers and self.transport != "http":
            raise ToolDefinitionError(f"MCP headers are for HTTP servers; {self.target!r} is "
                                      "a command", field="headers")
        self.argv = [] if self.transport == "http" else shlex.split(self.target)
        self.env = dict(env or {})
        self.cwd = cwd if cwd is not None else os.getcwd()
        self.name = name or self.target
        self.startup_timeout = startup_timeout
        self.timeout = timeout
        self.prefix = prefix
        self.headers = dict(headers or {})
        self.replay = bool(replay)
        self.approve_destructive = bool(approve_destructive)
        self.listed: list[dict[str, Any]] | None = None

    @property
    def command(self) -> str | None:
        """The executable of a stdio server (None over HTTP)."""
        return self.argv[0] if self.argv else None

    @property
    def key(self) -> str:
        """A stable identity: one live session per key per node."""
        ident = json.dumps([self.target, sorted(self.env.items()), self.cwd, self.prefix,
                            sorted(self.headers.items())])
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MCP({self.target!r})"

    def describe(self) -> str:
        """The server for messages: its command or URL (never its headers or env)."""
        if self.transport == "stdio":
            return f"MCP server command {self.target!r}"
        return f"MCP server at {self.target}"

    def read_only(self, tool: str) -> bool:
        """Whether the server marks ``tool`` (its own name) read-only."""
        return any(t["name"] == tool and t.get("read_only") for t in self.listed or [])

    def tool_name(self, tool: str) -> str:
        """The name a tool of this server is offered under."""
        return f"{self.prefix}{PREFIX_JOINER}{tool}" if self.prefix else tool

    def list_tools(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """Start (or reach) the server once and list its tools (kept on this object).

        Raises:
            ToolDefinitionError: the server failed to start or to answer; names the
                command and gives the tail of its stderr.
        """
        if self.listed is None or refresh:
            self.listed = self._probe(lambda c: _return(c.tools))
        return self.listed

    def resources(self) -> list[dict[str, Any]]:
        """The server's resources, each with its text when it has text:
        ``{"uri", "name", "description", "mime_type", "text"}``.

        Raises:
            ToolDefinitionError: the server failed to start.
        """
        return self._probe(_resources)  # type: ignore[no-any-return]

    def read_resource(self, uri: str) -> str:
        """One resource's text (binary contents as a short placeholder)."""
        return self._probe(lambda c: _read(c, uri))  # type: ignore[no-any-return]

    def prompt(self, name: str, args: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """A prompt of the server, rendered: OpenAI-style messages ``{role, content}``.

        Raises:
            ToolDefinitionError: the server failed to start.
        """
        return self._probe(lambda c: _prompt(c, name, args))  # type: ignore[no-any-return]

    def _probe(self, use: Callable[[MCPConnection], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            connection = MCPConnection(self)
            try:
                await connection.start()
                return await use(connection)
            finally:
                await connection.close()
                connection._release()

        return run_in_thread(run(), name="ray-orch-mcp-probe")


async def _return(value: Any) -> Any:
    return value


async def _read(connection: MCPConnection, uri: str) -> str:
    from .mcp_content import convert_result

    read = await connection.session.read_resource(uri)
    blocks = [type("Block", (), {"type": "resource", "resource": item})()
              for item in read.contents]
    return convert_result(type("Result", (), {"content": blocks})()).text


async def _resources(connection: MCPConnection) -> list[dict[str, Any]]:
    listed = await connection.session.list_resources()
    found = []
    for item in listed.resources:
        text = await _read(connection, str(item.uri))
        found.append({"uri": str(item.uri), "name": item.name,
                      "description": item.description or "",
                      "mime_type": getattr(item, "mime_type", None), "text": text})
    return found


async def _prompt(connection: MCPConnection, name: str,
                  args: dict[str, str] | None) -> list[dict[str, Any]]:
    from .mcp_content import _block

    got = await connection.session.get_prompt(name, {k: str(v) for k, v in (args or {}).items()})
    return [{"role": str(m.role), "content": _block(m.content, [])} for m in got.messages]


# -- where calls go ---------------------------------------------------------------------


@dataclass(kw_only=True)
class MCPCall:
    """One tool call for a session holder (this process, or the node's session actor)."""

    server: MCP
    """The server."""
    tool: str
    """The tool's name on the server (without the prefix)."""
    arguments: dict[str, Any]
    """The arguments."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """The caller's trace context (W3C carrier): the SDK's span of the call hangs under
    the caller's ``execute_tool`` span."""
    trace_settings: dict[str, str] = field(default_factory=dict)
    """The caller's ``OTEL_*`` settings (a session actor exports with them)."""
    read_only: bool = False
    """The tool is marked read-only: a call whose session died is made once more."""


@dataclass(kw_only=True)
class MCPReply:
    """A tool's result as the model gets it."""

    ok: bool
    """False when the server marked the result as an error."""
    text: str
    """The text of the tool message (placeholders for images and binaries)."""
    images: list[ToolImage] = field(default_factory=list)
    """Images, attached for models that take them."""
    where: dict[str, Any] = field(default_factory=dict)
    """Where the session is: ``pid`` (and ``node``)."""


class ProgressSink(Protocol):
    """Takes a tool's progress notifications: ``(progress, total, message)``."""

    def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


Router = Callable[[MCPCall, "ProgressSink | None"], Awaitable[MCPReply]]
_pools: dict[asyncio.AbstractEventLoop, SessionPool] = {}


def set_mcp_router(router: Router | None) -> None:
    """Send this process's MCP calls outside a run to ``router`` (a run's members route
    theirs to the node's session actor, ``ray_orch.core.shared``); None: sessions in
    this process."""
    shared.install(dataclasses.replace(shared.installed(), mcp_router=router))


async def route_call(call: MCPCall, progress: ProgressSink | None = None) -> MCPReply:
    """Call an MCP tool where this process sends MCP calls."""
    router = shared.current().mcp_router
    if router is not None:
        return await router(call, progress)  # type: ignore[no-any-return]
    return await local_call(call, progress)


def pool_of_this_loop() -> SessionPool:
    """The sessions kept in this process for the running event loop."""
    loop = asyncio.get_running_loop()
    for old in [lp for lp in _pools if lp.is_closed()]:
        del _pools[old]
    return _pools.setdefault(loop, SessionPool())


async def call_in(pool: SessionPool, call: MCPCall,
                  progress: ProgressSink | None = None) -> MCPReply:
    """Call through ``pool`` (sessions started again when they die)."""
    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress(done, total, message)

    converted = await pool.call(call.server, call.tool, call.arguments,
                                progress=on_progress if progress is not None else None,
                                read_only=call.read_only)
    return MCPReply(ok=not converted.is_error, text=converted.text, images=converted.images,
                    where={"pid": os.getpid()})


async def local_call(call: MCPCall, progress: ProgressSink | None = None) -> MCPReply:
    """Call through a session kept in this process (one per server per event loop)."""
    return await call_in(pool_of_this_loop(), call, progress)
