"""MCP servers as tools, through the official ``mcp`` SDK.

``MCP("command args")`` starts a server over stdio; ``MCP("http://host:port/mcp")``
connects over streamable HTTP. ``MCP`` is picklable configuration: the tools it lists
(listed once, on the driver, when the workflow is validated) travel with it, and live
sessions exist only where calls are made: in the node's ``MCPSessionActor``
(``actors/mcp_session.py``) on a cluster, or in this process (``Task.execute()``).

``MCPConnection`` is one live session (kept open by a task of its own, since the SDK's
contexts must be entered and left by the same task).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ray_orch.core import shared
from ray_orch.core.errors import ToolDefinitionError
from ray_orch.core.sync import run_in_thread

if TYPE_CHECKING:
    pass

__all__ = ["MCP", "MCPConnection", "local_call", "set_mcp_router"]

_STDERR_TAIL = 2000


class MCP:
    """An MCP server whose tools are offered to the model.

    Args:
        target: ``"command args"`` to start a server over stdio, or the URL of a
            streamable HTTP endpoint (``"http://127.0.0.1:8000/mcp"``).
        env: extra environment variables of a stdio server.
        cwd: working directory of a stdio server (default: this process's, where it
            exists on the node that starts the server).
        name: a label for messages (default: the target).
        startup_timeout: seconds to start the server and list its tools.
        timeout: seconds per tool call (None: no limit).

    Example:
        >>> server = MCP("python examples/mcp_orders_server.py")
        >>> server.transport, server.command
        ('stdio', 'python')
        >>> MCP("http://127.0.0.1:8765/mcp").transport
        'http'
    """

    def __init__(self, target: str, *, env: dict[str, str] | None = None,
                 cwd: str | None = None, name: str | None = None,
                 startup_timeout: float = 30.0, timeout: float | None = None) -> None:
        if not isinstance(target, str) or not target.strip():
            raise ToolDefinitionError(f"MCP needs a command or a URL, not {target!r}",
                                      field="tools")
        self.target = target.strip()
        self.transport = "http" if self.target.startswith(("http://", "https://")) else "stdio"
        self.argv = [] if self.transport == "http" else shlex.split(self.target)
        self.env = dict(env or {})
        self.cwd = cwd if cwd is not None else os.getcwd()
        self.name = name or self.target
        self.startup_timeout = startup_timeout
        self.timeout = timeout
        self.listed: list[dict[str, Any]] | None = None

    @property
    def command(self) -> str | None:
        """The executable of a stdio server (None over HTTP)."""
        return self.argv[0] if self.argv else None

    @property
    def key(self) -> str:
        """A stable identity: one live session per key per node."""
        ident = json.dumps([self.target, sorted(self.env.items()), self.cwd])
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MCP({self.target!r})"

    def list_tools(self) -> list[dict[str, Any]]:
        """Start (or reach) the server once and list its tools (kept on this object).

        Raises:
            ToolDefinitionError: the server failed to start or to answer; names the
                command and gives the tail of its stderr.
        """
        if self.listed is None:
            self.listed = run_in_thread(self._list(), name="ray-orch-mcp-probe")
        return self.listed

    async def _list(self) -> list[dict[str, Any]]:
        connection = MCPConnection(self)
        try:
            await connection.start()
            return connection.tools
        finally:
            await connection.close()


class MCPConnection:
    """One live MCP client session, held open by a background task."""

    def __init__(self, server: MCP) -> None:
        self.server = server
        self.tools: list[dict[str, Any]] = []
        self.session: Any = None
        self._stop: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stderr: Any = None

    async def start(self) -> None:
        """Start the server / connect, initialise and list tools.

        Raises:
            ToolDefinitionError: it did not start (command and stderr tail in the message).
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stop = asyncio.Event()
        self._runner = asyncio.ensure_future(self._hold(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.server.startup_timeout)
        except BaseException as exc:
            await self.close()
            raise self._failure(exc) from None

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                listed = await session.list_tools()
                self.tools = [_tool_entry(t) for t in listed.tools]
                self.session = session
                ready.set_result(None)
                assert self._stop is not None
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise
        finally:
            self.session = None

    def _transport(self) -> Any:
        if self.server.transport == "http":
            try:
                from mcp.client.streamable_http import streamable_http_client as client
            except ImportError:  # mcp 1.x
                from mcp.client.streamable_http import (  # type: ignore[attr-defined,no-redef]
                    streamablehttp_client as client,
                )

            return _pair(client(self.server.target))
        from mcp import StdioServerParameters, stdio_client

        # Kept open for the session's life (closed in close()): the server's stderr tail.
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115
            mode="w+", encoding="utf-8", errors="replace")
        command = self.server.argv[0]
        if command in ("python", "python3"):
            command = sys.executable  # the same interpreter (and venv) as ray-orch's
        params = StdioServerParameters(command=command, args=self.server.argv[1:],
                                       env={**os.environ, **self.server.env} or None,
                                       cwd=self.server.cwd if self.server.cwd and
                                       os.path.isdir(self.server.cwd) else None)
        return stdio_client(params, errlog=self._stderr)

    def _failure(self, exc: BaseException) -> ToolDefinitionError:
        what = (f"MCP server command {self.server.target!r}" if self.server.transport == "stdio"
                else f"MCP server at {self.server.target}")
        why = _reason(exc)
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            why = f"no answer within {self.server.startup_timeout:g} s"
        tail = self.stderr_tail()
        message = f"{what} failed to start: {why}"
        if tail:
            message += f"\n--- stderr (tail) ---\n{tail}"
        return ToolDefinitionError(message, field="tools")

    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr (stdio servers)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        with contextlib.suppress(Exception):
            self._stderr.flush()
            self._stderr.seek(0)
            return str(self._stderr.read()[-_STDERR_TAIL:]).strip()
        return ""

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Call a tool; ``(ok, text)`` where text joins the result's text contents.

        Raises:
            RuntimeError: the session is closed (the server went away).
        """
        if self.session is None:
            raise RuntimeError(f"the MCP session with {self.server.name} is closed")
        result = await self.session.call_tool(tool, arguments)
        is_error = bool(getattr(result, "is_error", getattr(result, "isError", False)))
        parts = []
        for item in getattr(result, "content", None) or []:
            text = getattr(item, "text", None)
            parts.append(text if isinstance(text, str) else str(item))
        structured = getattr(result, "structured_content",
                             getattr(result, "structuredContent", None))
        if not parts and structured is not None:
            parts.append(json.dumps(structured, default=str))
        return not is_error, "\n".join(parts)

    @property
    def alive(self) -> bool:
        """Whether the session is open."""
        return self.session is not None and self._runner is not None and not self._runner.done()

    async def close(self) -> None:
        """End the session (and stop a stdio server)."""
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            # wait_for cancels it past the bound (a server stuck in its handshake).
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._runner, 10)
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                self._stderr.close()


@contextlib.asynccontextmanager
async def _pair(client: Any) -> Any:
    # streamable HTTP yields (read, write, get_session_id) in mcp 1.x, (read, write) in 2.x.
    async with client as streams:
        yield streams[0], streams[1]


def _tool_entry(listed: Any) -> dict[str, Any]:
    schema = getattr(listed, "input_schema", None) or getattr(listed, "inputSchema", None)
    return {"name": listed.name, "description": listed.description or "",
            "parameters": dict(schema) if schema else {"type": "object", "properties": {}}}


def _reason(exc: BaseException) -> str:
    # anyio task groups wrap the cause in exception groups.
    group = getattr(builtins, "BaseExceptionGroup", ())
    while isinstance(exc, group) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- where calls go ---------------------------------------------------------------------

Router = Callable[["MCP", str, dict[str, Any]], Awaitable[tuple[bool, str, dict[str, Any]]]]
_local: dict[tuple[asyncio.AbstractEventLoop, str], MCPConnection] = {}
_local_lock: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def set_mcp_router(router: Router | None) -> None:
    """Send this process's MCP calls outside a run to ``router`` (a run's members route
    theirs to the node's session actor, ``ray_orch.core.shared``); None: sessions in
    this process."""
    shared.install(dataclasses.replace(shared.installed(), mcp_router=router))


async def route_call(server: MCP, tool: str,
                     arguments: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """Call an MCP tool where this process sends MCP calls; ``(ok, text, where)``."""
    router = shared.current().mcp_router
    if router is not None:
        return await router(server, tool, arguments)
    return await local_call(server, tool, arguments)


async def local_call(server: MCP, tool: str,
                     arguments: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """Call through a session kept in this process (one per server per event loop)."""
    loop = asyncio.get_running_loop()
    lock = _local_lock.setdefault(loop, asyncio.Lock())
    async with lock:
        connection = _local.get((loop, server.key))
        if connection is None or not connection.alive:
            connection = MCPConnection(server)
            await connection.start()
            _local[(loop, server.key)] = connection
    ok, text = await connection.call(tool, arguments)
    return ok, text, {"pid": os.getpid()}
