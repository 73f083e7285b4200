"""Running one tool call: in the agent's process, as a Ray task, or on an MCP server.

``execute_call`` never raises for the tool's own failures: an exception in the tool, an
unknown name, arguments that fail the schema, or the tool's ``timeout`` running out
come back as a ``ToolCall`` with ``ok=False`` and an error the model can read.
Sync functions run in a thread pool of their own, off the event loop, so the other
attempts of the actor keep running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ray_orch.core import shared, trace
from ray_orch.core.errors import MCPToolError
from ray_orch.core.line import Line, first_of

from . import hosts
from .capture import captured, text_of
from .mcp import MCPCall, route_call
from .spec import ToolSpec, is_coroutine_result

__all__ = ["ToolCall", "execute_call", "progress_to", "result_text", "trace_remote_with"]

_THREADS = int(os.environ.get("RAY_ORCH_TOOL_THREADS", "64"))
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_bodies: dict[int, hosts.Body] = {}  # by id of the tool's function, while it lives
_calls = itertools.count(1)  # keys of host calls' result copies
_held: dict[int, tuple[Any, hosts.Body]] = {}  # the same, for callables without weakrefs
_HELD = 256
_INLINE_BODY = 64 * 1024  # a larger body goes through the object store, once
_tasks: dict[str, Any] = {}  # the Ray remote function with each tool's options

progress_to: contextvars.ContextVar[Any] = contextvars.ContextVar("ray_orch_tool_progress",
                                                                  default=None)
"""Where tool progress goes in this context: ``fn(data)`` with ``tool``, ``call_id``,
``progress``, ``total``, ``message`` (the agent's member sets it for a streamed run)."""


def trace_remote_with(scope: Any) -> None:
    """Run this process's remote tool calls outside a run inside ``scope(settings,
    carrier)`` (a context manager that sets tracing up in the Ray worker, attaches the
    caller's trace context and exports the spans at the end); a run's members get
    ``observe.tracing.remote_scope`` with the run (``SharedServices.tool_scope``)."""
    shared.install(dataclasses.replace(shared.installed(), tool_scope=scope))


@dataclass(kw_only=True)
class ToolCall:
    """One tool call as it happened (``TaskOutput.metadata["tool_calls"]`` lists these)."""

    name: str
    """The tool's name as the model called it."""
    arguments: dict[str, Any]
    """The arguments the model gave (parsed JSON; ``{"_raw": text}`` if unparsable)."""
    ok: bool = True
    """Whether the call succeeded."""
    result: str = ""
    """What went back to the model (the result, or the error as JSON)."""
    error: str | None = None
    """The error text, when not ok."""
    error_type: str | None = None
    """The error's type name (the tool's own exception's, ``MCPSessionError``, ...)."""
    duration_s: float = 0.0
    """Seconds the call took (0 when replayed from the journal)."""
    where: str = "local"
    """``"local"`` (the agent's actor), ``"remote"`` (a Ray task or a warm host:
    ``tools/hosts.py``), ``"mcp"``, or
    ``"unknown"`` (the model named no tool it was offered)."""
    node: str | None = None
    """The Ray node id it ran on, when known."""
    pid: int | None = None
    """The process it ran in."""
    replayed: bool = False
    """True when the journaled result of an identical earlier call was reused."""
    started: float = 0.0
    """``time.time()`` at the start."""
    call_id: str = ""
    """The model's id for the call."""
    stdout: str = ""
    """What the tool printed in a Ray worker (the driver prints it; ``tools/capture.py``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What stays in the attempt: ``images`` (``ToolImage``s an MCP tool returned)."""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (what metadata holds)."""
        data = asdict(self)
        data.pop("extra")
        return data


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=_THREADS,
                                                      thread_name_prefix="ray-orch-tool")
    return _pool


def result_text(value: Any) -> str:
    """A tool's return value as the text of a tool message."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


_node: list[str] = []


def _node_id() -> str | None:
    if _node:
        return _node[0]
    ray = sys.modules.get("ray")  # never imported for this: ~0.6 s in a process without it
    try:
        if ray is not None and ray.is_initialized():
            _node.append(str(ray.get_runtime_context().get_node_id()))
            return _node[0]
    except Exception:
        return None
    return None


def _invoke(fn: Any, kwargs: dict[str, Any]) -> tuple[Any, str | None, int, str]:
    """A remote call's body: run the function where Ray placed it (what it prints is
    returned with its value)."""
    with captured() as printed:
        value = fn(**kwargs)
        if is_coroutine_result(value):
            value = asyncio.run(value)
    return value, _node_id(), os.getpid(), text_of(printed)


def _bound(fn: Any, scope: Any) -> Any:
    def call(kwargs: dict[str, Any], carrier: dict[str, str], settings: dict[str, str],
             services: shared.SharedServices | None = None) -> tuple[Any, str | None, int, str]:
        # The caller's shared services (breakers, limits, model server, MCP sessions)
        # hold for what the tool does too: a Ray worker installs none by itself.
        with shared.using(services):
            return _traced(kwargs, carrier, settings)

    def _traced(kwargs: dict[str, Any], carrier: dict[str, str],
                settings: dict[str, str]) -> tuple[Any, str | None, int, str]:
        if not carrier:
            return _invoke(fn, kwargs)
        if scope is not None:  # tracing set up here, spans exported before returning
            with scope(settings, carrier):
                return _invoke(fn, kwargs)
        # The caller's trace context: spans the tool makes hang under its execute_tool.
        from opentelemetry import context
        from opentelemetry.propagate import extract

        token = context.attach(extract(carrier))
        try:
            return _invoke(fn, kwargs)
        finally:
            context.detach(token)

    return call


def _ray_options(spec: ToolSpec) -> dict[str, Any]:
    o = spec.options
    options: dict[str, Any] = {"num_cpus": o.num_cpus if o.num_cpus is not None else 1,
                               "max_retries": 0}
    if o.num_gpus:
        options["num_gpus"] = o.num_gpus
    if o.resources:
        options["resources"] = dict(o.resources)
    if o.runtime_env:
        options["runtime_env"] = dict(o.runtime_env)
    return options


async def _run_remote(spec: ToolSpec, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():  # Task.execute() without Ray: run it here
        return await _run_local(spec, kwargs)
    body = _body(ray, spec)
    args = (kwargs, trace.carrier(), trace.settings())
    pool = hosts.pool(spec) if hosts.hostable(spec) else None
    host = pool.take() if pool is not None else None
    if pool is not None and host is not None:  # a warm process (tools/hosts.py)
        return await _on_host(ray, pool, host, body, args)
    ref = _task_of(ray, spec).remote(body, *args, services=shared.current())
    try:
        value, node, pid, printed = await ref
    except asyncio.CancelledError:
        ray.cancel(ref)
        raise
    except ray.exceptions.RayTaskError as exc:  # type: ignore[union-attr]
        raise _cause(exc) from None
    return value, {"node": node, "pid": pid, "stdout": printed}


async def _on_host(ray: Any, pool: hosts.HostPool, host: hosts.Host, body: hosts.Body,
                   args: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
    sent = body.bare() if body.digest in host.has else body
    line = Line.here()  # the member's: a copy of the result comes there (~2 ms sooner)
    reply = (line.name, f"tool:{next(_calls)}") if line.name is not None else None
    try:
        ref = host.handle.call.remote((sent, *args, shared.current()), reply)
        value, node, pid, printed = await (first_of(line, ref, reply[1]) if reply else ref)
    except ray.exceptions.RayTaskError as exc:
        host.has.add(body.digest)
        pool.give_back(host)  # the tool raised; its host is fine
        raise _cause(exc) from None
    except BaseException:  # cancelled (the tool stops with its process), or the host died
        pool.lose(host)
        raise
    host.has.add(body.digest)
    pool.give_back(host)
    return value, {"node": node, "pid": pid, "stdout": printed}


def _task_of(ray: Any, spec: ToolSpec) -> Any:
    """The remote function that runs a call's ``Body``, with the tool's name and options
    (made once per name and options: ``.options()`` on every call costs)."""
    options = {"name": f"tool:{spec.name}", **_ray_options(spec)}
    key = json.dumps(options, sort_keys=True, default=str)
    found = _tasks.get(key)
    if found is None:
        if len(_tasks) >= _HELD:
            _tasks.clear()
        found = _tasks[key] = ray.remote(hosts.run_body).options(**options)
    return found


def _body(ray: Any, spec: ToolSpec) -> hosts.Body:
    """The tool's call body (tracing, what it prints, the shared services) pickled, once
    per function object: each run brings its own copy of the function, and its calls run
    that copy (with the globals it carries)."""
    fn = spec.fn
    body = _bodies.get(id(fn))
    if body is None:
        held = _held.get(id(fn))
        if held is not None and held[0] is fn:
            return held[1]
        data = ray.cloudpickle.dumps(_bound(fn, shared.current().tool_scope))
        digest = hashlib.blake2b(data, digest_size=16).digest()
        body = (hosts.Body(digest, data) if len(data) <= _INLINE_BODY else
                hosts.Body(digest, ref=ray.put(data)))
        try:
            weakref.finalize(fn, _bodies.pop, id(fn), None)
            _bodies[id(fn)] = body
        except TypeError:  # no weak references: kept (the last few) with the callable
            _held[id(fn)] = (fn, body)
            if len(_held) > _HELD:
                del _held[next(iter(_held))]
    return body


def _cause(exc: BaseException) -> BaseException:
    """The tool's own exception inside Ray's ``RayTaskError``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


async def _run_local(spec: ToolSpec, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    assert spec.fn is not None
    with captured() as printed:
        if spec.is_async:
            value = await spec.fn(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            # The tool's own spans hang under execute_tool, and it prints into this
            # call's buffer: the thread runs in a copy of this context.
            context = contextvars.copy_context()
            value = await loop.run_in_executor(_threads(), lambda: context.run(
                spec.fn, **kwargs))  # type: ignore[misc, arg-type]
            if is_coroutine_result(value):
                value = await value
    return value, {"node": _node_id(), "pid": os.getpid(), "stdout": text_of(printed)}


async def _run(spec: ToolSpec, kwargs: dict[str, Any],
               call: ToolCall) -> tuple[Any, dict[str, Any]]:
    if spec.server is not None:
        tool = spec.server_tool or spec.name
        reply = await route_call(MCPCall(server=spec.server, tool=tool, arguments=kwargs,
                                         trace_context=trace.carrier(),
                                         trace_settings=trace.settings(),
                                         read_only=spec.server.read_only(tool)),
                                 _progress_sink(call))
        if not reply.ok:
            raise MCPToolError(reply.text or "the MCP tool reported an error",
                               server=spec.server.name, tool=tool)
        if reply.images:
            call.extra["images"] = reply.images
        return reply.text, reply.where
    if spec.options.remote:
        return await _run_remote(spec, kwargs)
    return await _run_local(spec, kwargs)


def _progress_sink(call: ToolCall) -> Any:
    sink = progress_to.get()
    if sink is None:
        return None

    def report(progress: float, total: float | None, message: str | None) -> None:
        sink({"tool": call.name, "call_id": call.call_id, "progress": progress,
              "total": total, "message": message})

    return report


def _parse(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(raw, dict):
        return raw, None
    if raw is None or raw == "":
        return {}, None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        return None, f"the arguments are not valid JSON ({exc}): {str(raw)[:200]}"
    if not isinstance(value, dict):
        return None, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None


def fail_call(call: ToolCall, error: str, error_type: str | None = None) -> ToolCall:
    """Mark ``call`` failed; the model reads ``error`` as the call's result."""
    call.ok = False
    call.error = error
    call.error_type = error_type or call.error_type or "ToolError"
    call.result = json.dumps({"error": error, "tool": call.name, "arguments": call.arguments},
                             default=str)
    return call


async def execute_call(spec: ToolSpec | None, name: str, raw_arguments: Any, *,
                       call_id: str = "", available: list[str] | None = None) -> ToolCall:
    """Run one call of a tool the model asked for, in an ``execute_tool {name}`` span."""
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                  "gen_ai.tool.call.id": call_id or None,
                  "gen_ai.tool.type": None if spec is None else
                  "extension" if spec.server is not None else "function",
                  "gen_ai.tool.description": spec.description[:500] if spec else None,
                  "openinference.span.kind": "TOOL"}
    if trace.enabled() and trace.content_recorded():
        attributes["gen_ai.tool.call.arguments"] = (
            raw_arguments if isinstance(raw_arguments, str)
            else json.dumps(raw_arguments, default=str))[:16_000]
    with trace.span(f"execute_tool {name}", attributes) as span:
        call = await _execute(spec, name, raw_arguments, call_id=call_id, available=available)
        if span is not None:
            span.set_attribute("ray_orch.tool.where", call.where)
            if call.ok and trace.content_recorded():
                span.set_attribute("gen_ai.tool.call.result", call.result[:16_000])
            if not call.ok:  # the type only: an error's text may carry a secret
                kind = call.error_type or "ToolError"
                trace.record_error(span, kind, error_type=kind)
        return call


async def _execute(spec: ToolSpec | None, name: str, raw_arguments: Any, *,
                   call_id: str = "", available: list[str] | None = None) -> ToolCall:
    """Run one call of a tool the model asked for.

    Args:
        spec: the tool (None: the model named a tool that does not exist).
        name: the name the model used.
        raw_arguments: the arguments as the model sent them (JSON text or a dict).
        call_id: the model's id for the call.
        available: the tools offered (for the unknown-tool message).

    Returns:
        The call; ``ok=False`` with an error for the tool's failures.
    """
    arguments, problem = _parse(raw_arguments)
    call = ToolCall(name=name, arguments=arguments if arguments is not None
                    else {"_raw": str(raw_arguments)[:1000]}, call_id=call_id,
                    started=time.time())
    started = time.perf_counter()
    try:
        if spec is None:
            call.where = "unknown"  # metrics label it so: a model's invented names are unbounded
            return fail_call(call, f"unknown tool '{name}'; the tools are: "
                               f"{', '.join(available or []) or 'none'}", "UnknownTool")
        call.where = spec.where
        if problem is not None:
            return fail_call(call, problem, "InvalidArguments")
        assert arguments is not None
        kwargs = arguments
        model = spec.arguments_model()
        if model is not None:
            try:
                checked = model.model_validate(arguments)
            except ValidationError as exc:
                return fail_call(call, f"the arguments do not match the tool's schema: {exc}",
                                 "ValidationError")
            kwargs = {key: getattr(checked, key) for key in type(checked).model_fields}
        try:
            coro = _run(spec, kwargs, call)
            timeout = spec.options.timeout
            value, place = await (asyncio.wait_for(coro, timeout) if timeout else coro)
        except asyncio.TimeoutError:
            return fail_call(call, f"TimeoutError: tool '{name}' did not finish within its "
                               f"timeout of {spec.options.timeout:g} s", "TimeoutError")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return fail_call(call, f"{type(exc).__name__}: {exc}", type(exc).__name__)
        call.node, call.pid = place.get("node"), place.get("pid")
        call.stdout = place.get("stdout") or ""
        call.result = result_text(value)
        return call
    finally:
        call.duration_s = time.perf_counter() - started
