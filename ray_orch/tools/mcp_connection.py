"""Live MCP sessions: ``MCPConnection`` (one session, held open by a task of its own) and
``SessionPool`` (sessions by server, started again when they die).

A stdio server that exits, or an HTTP server that drops its connection, fails the call
in flight with a short ``MCPSessionError`` (the model reads it as the tool's result);
the next call starts the server (or reconnects) again, after a backoff (0.5 s, doubling,
at most 8 s) and within a bound (at most 5 restarts in 60 s, then calls fail at once
until the window has passed).

The SDK's own spans (``MCP send initialize``, ``tools/list``) of the session's
handshake are not recorded (their context is an unsampled parent); a tool call's span
is a child of the caller's ``execute_tool`` span.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ray_orch.core.errors import MCPSessionError, MCPToolError, ToolDefinitionError

from .mcp_content import Converted, convert_result

__all__ = ["MCP", "MCPConnection", "SessionPool", "reason_of", "server_environment",
           "tool_entry"]

_STDERR_TAIL = 2000
_log = logging.getLogger("ray_orch.mcp")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
           "alert": logging.CRITICAL, "emergency": logging.CRITICAL}

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class MCP(Protocol):
    """What a session needs of a server's configuration (``ray_orch.tools.mcp.MCP``)."""

    target: str
    transport: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    name: str
    headers: dict[str, str]
    startup_timeout: float
    listed: list[dict[str, Any]] | None

    @property
    def key(self) -> str: ...

    def describe(self) -> str: ...


def server_environment(explicit: dict[str, str]) -> dict[str, str]:
    """A stdio server's environment: the MCP SDK's safe default (``HOME``, ``PATH``,
    ``SHELL``, ``TERM``, ``USER``) plus what ``MCP(..., env={...})`` gives; nothing else
    of this process's environment."""
    from mcp.client.stdio import get_default_environment

    return {**get_default_environment(), **explicit}


def reason_of(exc: BaseException) -> str:
    """``Type: message`` of the first real cause (anyio wraps causes in groups)."""
    group = getattr(builtins, "BaseExceptionGroup", ())
    while isinstance(exc, group) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _untraced() -> Any:
    """A context whose spans are not recorded (an unsampled parent)."""
    import random

    from opentelemetry import trace as otel_trace

    parent = otel_trace.SpanContext(trace_id=random.getrandbits(128) or 1,
                                    span_id=random.getrandbits(64) or 1, is_remote=True,
                                    trace_flags=otel_trace.TraceFlags(0))
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(parent))


class MCPConnection:
    """One live MCP client session, held open by a background task."""

    def __init__(self, server: MCP) -> None:
        self.server = server
        self.tools: list[dict[str, Any]] = []
        self.session: Any = None
        self.server_pid: int | None = None
        self.started_at = 0.0
        self._stop: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stderr: Any = None
        self._relist: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the server / connect, initialise and list tools.

        Raises:
            ToolDefinitionError: it did not start (command and stderr tail in the message).
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stop = asyncio.Event()
        before = _children()
        self._runner = asyncio.ensure_future(self._hold(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.server.startup_timeout)
        except BaseException as exc:
            await self.close()  # the server has exited: its stderr is complete
            failure = self._failure(exc)
            self._release()
            raise failure from None
        self.started_at = time.time()
        if self.server.transport == "stdio":
            self.server_pid = _started_pid(_children() - before, self.server.argv)

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        from mcp import ClientSession
        from opentelemetry import context as otel_context

        token = otel_context.attach(_untraced())  # the handshake's SDK spans: not recorded
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(
                    read, write, logging_callback=self._on_log,
                    message_handler=self._on_message))
                await session.initialize()
                self.session = session
                await self._list()
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
            otel_context.detach(token)

    async def _list(self) -> None:
        listed = await self.session.list_tools()
        self.tools = [tool_entry(t) for t in listed.tools]

    async def _on_log(self, params: Any) -> None:
        """Server logging, into this process's log (Ray forwards it to the driver)."""
        level = _LEVELS.get(str(getattr(params, "level", "info")), logging.INFO)
        who = getattr(params, "logger", None)
        _log.log(level, "MCP %s%s: %s", self.server.name, f" ({who})" if who else "",
                 str(getattr(params, "data", ""))[:2000])

    async def _on_message(self, message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/tools/list_changed":
            self._relist = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        with contextlib.suppress(Exception):
            await self._list()
            _log.info("MCP %s: the tool list changed; %d tools now", self.server.name,
                      len(self.tools))
            self.server.listed = self.tools

    def _transport(self) -> Any:
        server = self.server
        if server.transport == "http":
            try:
                from mcp.client.streamable_http import streamable_http_client
            except ImportError:  # mcp 1.x: headers go to the transport itself
                from mcp.client.streamable_http import (  # type: ignore[attr-defined]
                    streamablehttp_client,
                )

                return _pair(streamablehttp_client(server.target, headers=dict(server.headers)),
                             contextlib.nullcontext())
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = create_mcp_http_client(headers=dict(server.headers) or None)
            return _pair(streamable_http_client(server.target, http_client=client), client)
        from mcp import StdioServerParameters, stdio_client

        # Kept open for the session's life (released after a failure is described).
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115
            mode="w+", encoding="utf-8", errors="replace")
        command = _executable(server.argv[0])
        params = StdioServerParameters(command=command, args=server.argv[1:],
                                       env=server_environment(server.env),
                                       cwd=server.cwd if server.cwd and
                                       os.path.isdir(server.cwd) else None)
        return stdio_client(params, errlog=self._stderr)

    def _failure(self, exc: BaseException) -> ToolDefinitionError:
        why = reason_of(exc)
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            why = f"no answer within {self.server.startup_timeout:g} s"
        message = f"{self.server.describe()} failed to start: {why}"
        tail = self.stderr_tail()
        if tail:
            message += f"\n--- stderr (tail) ---\n{tail}"
        return ToolDefinitionError(message, field="tools")

    def stderr_tail(self, limit: int = _STDERR_TAIL) -> str:
        """The last characters the server wrote to stderr (stdio servers)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        with contextlib.suppress(Exception):
            self._stderr.flush()
            self._stderr.seek(0)
            return str(self._stderr.read()[-limit:]).strip()
        return ""

    async def call(self, tool: str, arguments: dict[str, Any], *,
                   progress: Progress | None = None) -> Converted:
        """Call a tool; its result as text (and images).

        Raises:
            MCPSessionError: the session is closed, or broke during the call.
            MCPToolError: the server refused the request (an unknown tool, bad arguments).
        """
        session = self.session
        if session is None:
            raise MCPSessionError(f"the session with {self.server.describe()} is closed",
                                  server=self.server.name, tool=tool)
        try:
            result = await session.call_tool(tool, arguments, progress_callback=progress)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if await self.healthy():
                raise MCPToolError(f"{reason_of(exc)}", server=self.server.name,
                                   tool=tool) from None
            how = "exited" if self.server.transport == "stdio" else "dropped the connection"
            raise MCPSessionError(
                f"{self.server.describe()} {how} during the call of '{tool}' "
                f"({reason_of(exc)}); it is started again on the next call",
                server=self.server.name, tool=tool) from None
        return convert_result(result)

    async def healthy(self, timeout: float = 5.0) -> bool:
        """Whether the session still answers (a ping)."""
        if not self.alive:
            return False
        try:
            await asyncio.wait_for(self.session.send_ping(), timeout)
        except Exception:
            return False
        return True

    @property
    def alive(self) -> bool:
        """Whether the session is open (and a stdio server's process still runs)."""
        if self.session is None or self._runner is None or self._runner.done():
            return False
        return self.server_pid is None or _running(self.server_pid)

    async def close(self) -> None:
        """End the session (and stop a stdio server)."""
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            # wait_for cancels it past the bound (a server stuck in its handshake).
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._runner, 10)

    def _release(self) -> None:
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                self._stderr.close()

    def __del__(self) -> None:
        self._release()


@contextlib.asynccontextmanager
async def _pair(client: Any, http: Any) -> Any:
    # streamable HTTP yields (read, write, get_session_id) in mcp 1.x, (read, write) in 2.x;
    # ``http``: the HTTP client we made (closed with the session).
    async with _entered(http), client as streams:
        yield streams[0], streams[1]


@contextlib.asynccontextmanager
async def _entered(manager: Any) -> Any:
    if hasattr(manager, "__aenter__"):
        async with manager:
            yield
    else:
        with manager:
            yield


def tool_entry(listed: Any) -> dict[str, Any]:
    """A listed tool as plain data: name, description, parameters, annotations."""
    schema = getattr(listed, "input_schema", None) or getattr(listed, "inputSchema", None)
    notes = getattr(listed, "annotations", None)

    def hint(*names: str) -> Any:
        return next((getattr(notes, n) for n in names if getattr(notes, n, None) is not None),
                    None)

    execution = getattr(listed, "execution", None)
    task_support = getattr(execution, "task_support", None) or getattr(
        execution, "taskSupport", None)
    return {"name": listed.name, "description": listed.description or "",
            "parameters": dict(schema) if schema else {"type": "object", "properties": {}},
            "read_only": bool(hint("read_only_hint", "readOnlyHint")),
            "destructive": hint("destructive_hint", "destructiveHint") is not False,
            "task_support": str(task_support) if task_support else None}


def _executable(command: str) -> str:
    """``python`` is this interpreter (and venv); a bare command not on ``PATH`` is looked
    up beside it too (a console script of this venv, e.g. ``mcp-server-time``)."""
    if command in ("python", "python3"):
        return sys.executable
    if os.sep not in command and shutil.which(command) is None:
        beside = os.path.join(os.path.dirname(sys.executable), command)
        if os.access(beside, os.X_OK):
            return beside
    return command


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (not exited, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _started_pid(new: set[int], argv: list[str]) -> int | None:
    """Which of the new children is the server (its command line names the server's)."""
    mark = argv[-1] if len(argv) > 1 else os.path.basename(argv[0]) if argv else ""
    for pid in sorted(new):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if mark.encode() in f.read():
                return pid
    return min(new) if len(new) == 1 else None


def _children() -> set[int]:
    """The pids of this process's children (Linux; empty elsewhere)."""
    me, found = str(os.getpid()), set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError), \
                    open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    found.add(int(entry))
    return found


@dataclass(kw_only=True)
class _Health:
    """How one server's sessions have fared."""

    connection: MCPConnection | None = None
    starts: int = 0
    restarts: list[float] = field(default_factory=list)
    failures: int = 0
    last_error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SessionPool:
    """Live sessions by server (``MCP.key``), started again when they die.

    Args:
        max_restarts: restarts allowed within ``window_s``; past it, calls fail at once.
        window_s: the bound's window, in seconds.
        base_delay_s: the first restart's delay; it doubles with each failure in a row.
        max_delay_s: the longest delay.
    """

    def __init__(self, *, max_restarts: int = 5, window_s: float = 60.0,
                 base_delay_s: float = 0.5, max_delay_s: float = 8.0) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.health: dict[str, _Health] = {}
        self.servers: dict[str, MCP] = {}

    async def connection(self, server: MCP) -> MCPConnection:
        """The server's live session, started (again) if needed.

        Raises:
            ToolDefinitionError: the first start failed (command and stderr tail).
            MCPSessionError: a restart failed, or the restart bound is reached.
        """
        health = self.health.setdefault(server.key, _Health())
        self.servers[server.key] = server
        async with health.lock:
            if health.connection is not None and health.connection.alive:
                return health.connection
            if health.connection is not None:  # it died between calls
                health.failures += 1
                health.last_error = health.last_error or f"{server.describe()} exited"
                await health.connection.close()
                health.connection._release()
                health.connection = None
            if health.starts:
                await self._before_restart(server, health)
            connection = MCPConnection(server)
            health.starts += 1
            try:
                await connection.start()
            except ToolDefinitionError as exc:
                health.failures += 1
                health.last_error = str(exc).split("\n", 1)[0][:300]
                if health.starts == 1:
                    raise
                tail = connection.stderr_tail(400)
                raise MCPSessionError(f"{health.last_error}" + (
                    f"; stderr: {' '.join(tail.split())}" if tail else ""),
                    server=server.name) from None
            health.connection = connection
            return connection

    async def _before_restart(self, server: MCP, health: _Health) -> None:
        now = time.monotonic()
        health.restarts = [t for t in health.restarts if now - t < self.window_s]
        if len(health.restarts) >= self.max_restarts:
            wait = self.window_s - (now - health.restarts[0])
            raise MCPSessionError(
                f"{server.describe()} was started again {len(health.restarts)} times in "
                f"{self.window_s:g} s; not again for {wait:.0f} s (last error: "
                f"{health.last_error})", server=server.name)
        delay = min(self.base_delay_s * 2 ** max(health.failures - 1, 0), self.max_delay_s)
        if health.failures:
            await asyncio.sleep(delay)
        health.restarts.append(time.monotonic())

    async def call(self, server: MCP, tool: str, arguments: dict[str, Any], *,
                   progress: Progress | None = None, read_only: bool = False) -> Converted:
        """Call a tool on the server's session (started again if it died).

        A ``read_only`` tool (``readOnlyHint``) whose session dies during the call is
        called once more on a new session (it has no side effects to repeat); any other
        tool's call fails.

        Raises:
            MCPSessionError: the server is gone and could not be started again, or died
                during this call (the next call starts it again).
            MCPToolError: the server refused the request.
            ToolDefinitionError: the server never started.
        """
        for attempt in range(2 if read_only else 1):
            connection = await self.connection(server)
            health = self.health[server.key]
            try:
                result = await connection.call(tool, arguments, progress=progress)
            except MCPSessionError as exc:
                health.failures += 1
                health.last_error = str(exc)[:300]
                await connection.close()
                connection._release()
                if attempt or not read_only:
                    raise
                continue
            health.failures = 0
            return result
        raise AssertionError("unreachable")

    def info(self) -> list[dict[str, Any]]:
        """One row per server: transport, target, state, pid, starts, last error."""
        rows = []
        for key, health in sorted(self.health.items()):
            server = self.servers[key]
            alive = health.connection is not None and health.connection.alive
            rows.append({"key": key, "name": server.name, "transport": server.transport,
                         "target": server.describe(), "alive": alive,
                         "server_pid": health.connection.server_pid if alive and
                         health.connection else None,
                         "tools": len(health.connection.tools) if alive and
                         health.connection else 0,
                         "starts": health.starts, "restarts": max(health.starts - 1, 0),
                         "last_error": health.last_error})
        return rows

    async def close(self) -> None:
        """End every session (stops stdio servers)."""
        for health in self.health.values():
            if health.connection is not None:
                with contextlib.suppress(Exception):
                    await health.connection.close()
                health.connection._release()
                health.connection = None
