"""What a tool is: ``ToolSpec``, the ``@tool`` decorator, and turning a ``tools=[...]`` list
into specs (``tool_specs``), with the static checks that come before any model call.

A spec is plain, picklable data: the function itself (cloudpickle carries it to the
agent actors), its name, description and JSON schema, and where it runs. MCP servers
(``ray_orch.MCP``, see ``mcp.py``) contribute one spec per tool they list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from ray_orch.core.errors import ToolDefinitionError

from .schema import arguments_model, describe, function_schema, inner_callable, unwrap_tool

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .mcp import MCP

__all__ = ["ToolOptions", "ToolSpec", "tool", "tool_options", "tool_specs", "unwrap_tool"]

Where = Literal["local", "remote", "mcp"]


@dataclass(frozen=True, kw_only=True)
class ToolOptions:
    """What ``@tool(...)`` recorded on a function."""

    name: str | None = None
    """The tool's name for the model (default: the function's name)."""
    description: str | None = None
    """What the tool does (default: the docstring's summary)."""
    remote: bool = False
    """Run each call as a Ray task (with the resources below)."""
    num_cpus: float | None = None
    """CPUs of each remote call."""
    num_gpus: float | None = None
    """GPUs of each remote call."""
    resources: dict[str, float] | None = None
    """Custom Ray resources of each remote call."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment of each remote call."""
    timeout: float | None = None
    """Seconds a call may take; past it the model gets a timeout error as the result."""
    requires_approval: bool = False
    """A human must approve each call (acted on by the approvals feature)."""
    replay: bool = True
    """A retried attempt or resumed run reuses the journaled result of an identical call;
    False: the tool always runs again."""


@dataclass(kw_only=True)
class ToolSpec:
    """One tool offered to the model."""

    name: str
    """The name the model calls it by."""
    description: str
    """What it does (sent to the model)."""
    parameters: dict[str, Any]
    """The JSON schema of its arguments."""
    fn: Callable[..., Any] | None = None
    """The function (None for an MCP tool)."""
    server: MCP | None = None
    """The MCP server that serves it (None for a function)."""
    server_tool: str | None = None
    """The tool's own name on its MCP server (``name`` may carry the server's prefix)."""
    options: ToolOptions = field(default_factory=ToolOptions)
    """Placement, timeout, approval and replay options."""
    _model: Any = field(default=None, repr=False, compare=False)

    @property
    def where(self) -> Where:
        """``"mcp"``, ``"remote"`` (a Ray task) or ``"local"`` (in the agent's actor)."""
        if self.server is not None:
            return "mcp"
        return "remote" if self.options.remote else "local"

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function."""
        return self.fn is not None and inspect.iscoroutinefunction(unwrap_tool(self.fn))

    def openai(self) -> dict[str, Any]:
        """The entry of the OpenAI ``tools`` request field."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters}}

    def arguments_model(self) -> type[BaseModel] | None:
        """The pydantic model that checks arguments (None for MCP tools: the server does)."""
        if self.fn is None:
            return None
        if self._model is None:
            self._model = arguments_model(self.fn, self.name)
        return self._model  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # rebuilt where it is used
        return state


def _layers(fn: Any) -> list[Any]:
    """``fn`` and what it wraps (partials, bound methods, decorators), outermost first."""
    layers: list[Any] = []
    while fn is not None and len(layers) < 32:
        layers.append(fn)
        fn = inner_callable(fn)
    return layers


def tool_options(fn: Any) -> ToolOptions:
    """The options ``@tool(...)`` recorded on ``fn`` or on anything it wraps (a partial,
    a bound method, a decorated function): the outermost ones, except that approval
    cannot be wrapped away: if any layer requires approval, so does the tool.

    Example:
        >>> import functools
        >>> @tool(requires_approval=True)
        ... def charge(amount: int, currency: str) -> str:
        ...     return f"charged {amount} {currency}"
        >>> tool_options(functools.partial(charge, currency="EUR")).requires_approval
        True
        >>> tool_options(tool(functools.partial(charge, currency="EUR"))).requires_approval
        True
    """
    if isinstance(fn, ToolSpec):
        return fn.options
    found = [o for o in (getattr(layer, "__ray_orch_tool__", None) for layer in _layers(fn))
             if isinstance(o, ToolOptions)]
    if not found:
        return ToolOptions()
    if found[0].requires_approval or not any(o.requires_approval for o in found):
        return found[0]
    return dataclasses.replace(found[0], requires_approval=True)


@overload
def tool(fn: Callable[..., Any], /) -> Callable[..., Any]: ...


@overload
def tool(fn: None = None, /, *, name: str | None = None, description: str | None = None,
         remote: bool = False, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict[str, float] | None = None, runtime_env: dict[str, Any] | None = None,
         timeout: float | None = None, requires_approval: bool = False,
         replay: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
         description: str | None = None, remote: bool = False, num_cpus: float | None = None,
         num_gpus: float | None = None, resources: dict[str, float] | None = None,
         runtime_env: dict[str, Any] | None = None, timeout: float | None = None,
         requires_approval: bool = False, replay: bool = True) -> Any:
    """Mark a function as a tool, bare (``@tool``) or with options (``@tool(...)``).

    The function is returned unchanged (still callable as before), with its options
    recorded on it. Plain functions work as tools too; ``@tool`` is for the options.

    Args:
        fn: the function (when used bare).
        name: the tool's name for the model (default: the function's name).
        description: what it does (default: the docstring's summary).
        remote: run each call as a Ray task, possibly on another node. With
            ``num_cpus=0`` and no GPUs or custom resources (a tool that reserves
            nothing), a call goes to a warm process kept for such tools when one is free
            (``tools/hosts.py``: about 1 ms less a call than a task's worker lease).
        num_cpus, num_gpus, resources, runtime_env: that task's Ray options.
        timeout: seconds per call; past it the model gets a timeout error as the result.
        requires_approval: a human must approve each call (stored for approvals).
        replay: reuse the journaled result of an identical call on a retried attempt or
            a resumed run (False: always run again).

    Returns:
        The function, or a decorator.

    Raises:
        ToolDefinitionError: an option has the wrong type or value.

    Example:
        >>> @tool(timeout=5, remote=True, num_cpus=1)
        ... def lookup_order(customer: str) -> str:
        ...     '''Look up a customer's latest order.'''
        ...     return "A-1001: shipped"
        >>> lookup_order("alice")
        'A-1001: shipped'
        >>> lookup_order.__ray_orch_tool__.remote
        True
    """
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ToolDefinitionError(f"tool timeout must be a positive number, not {timeout!r}",
                                  field="timeout")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ToolDefinitionError(f"tool name must be a non-empty string, not {name!r}",
                                  field="name")
    options = ToolOptions(name=name, description=description, remote=remote,
                          num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                          runtime_env=runtime_env, timeout=timeout,
                          requires_approval=requires_approval, replay=replay)

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(target):
            raise ToolDefinitionError(f"@tool needs a function, not {target!r}", field="tools")
        try:
            target.__ray_orch_tool__ = options  # type: ignore[attr-defined]
        except AttributeError:  # a bound method or a builtin takes no attributes
            raise ToolDefinitionError(
                f"@tool cannot mark {target!r}: it takes no attributes; mark the function "
                "it wraps, or wrap it in a plain function", field="tools") from None
        return target

    return mark(fn) if fn is not None else mark


def _function_spec(fn: Callable[..., Any], who: str, index: int) -> ToolSpec:
    options = tool_options(fn)
    target = unwrap_tool(fn)
    name = options.name or getattr(target, "__name__", None)
    if not name or name == "<lambda>":
        raise ToolDefinitionError(f"{who}: tools[{index}] ({fn!r}) has no name; give it one "
                                  "with @tool(name=...)", field="tools")
    try:
        parameters = function_schema(fn, name)
    except Exception as exc:
        raise ToolDefinitionError(
            f"{who}: tool '{name}' cannot be offered to a model: its parameters cannot "
            f"become a JSON schema ({type(exc).__name__}: {exc})", field="tools") from None
    summary, _ = describe(target)
    return ToolSpec(name=name, description=options.description or summary or name,
                    parameters=parameters, fn=fn, options=options)


def tool_specs(tools: list[Any] | tuple[Any, ...] | None, *, who: str,
               probe: bool = False) -> list[ToolSpec]:
    """The specs of a ``tools=[...]`` list, checked.

    Args:
        tools: functions (plain or ``@tool``), ``MCP`` servers, or ``ToolSpec``s.
        who: what owns the list, for messages (``"agent 'Support'"``).
        probe: start MCP servers not listed yet and list their tools (else they
            contribute nothing until listed).

    Returns:
        One spec per tool, in order.

    Raises:
        ToolDefinitionError: something is not a tool, a schema cannot be built, two tools
            share a name, or an MCP server failed to start.
    """
    from .mcp import MCP

    if tools is None:
        return []
    if not isinstance(tools, (list, tuple)):
        raise ToolDefinitionError(f"{who}: tools must be a list, not {type(tools).__name__}",
                                  field="tools")
    specs: list[ToolSpec] = []
    for index, item in enumerate(tools):
        if isinstance(item, ToolSpec):
            specs.append(item)
        elif isinstance(item, MCP):
            if probe:
                item.list_tools()
            specs.extend(server_specs(item))
        elif callable(item) and not isinstance(item, type):
            specs.append(_function_spec(item, who, index))
        else:
            raise ToolDefinitionError(
                f"{who}: tools[{index}] is not a tool: {item!r} ({type(item).__name__}); give "
                "a function, a @tool function or ray_orch.MCP(...)", field="tools")
    seen: dict[str, ToolSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise _collision(who, seen[spec.name], spec)
        seen[spec.name] = spec
    return specs


def _collision(who: str, first: ToolSpec, second: ToolSpec) -> ToolDefinitionError:
    """Two tools share a name: say whose they are and how to tell them apart."""
    def whose(spec: ToolSpec) -> str:
        return spec.server.describe() if spec.server is not None else "a function"

    if first.server is None and second.server is None:
        advice = "rename one with @tool(name=...)"
    else:
        advice = ("give each MCP server a prefix, e.g. MCP(..., prefix=\"a\") offers "
                  f"'a_{second.server_tool or second.name}'")
        if first.server is None or second.server is None:
            advice += ", or rename the function with @tool(name=...)"
    return ToolDefinitionError(f"{who}: two tools are named '{second.name}' ({whose(first)} "
                               f"and {whose(second)}); {advice}", field="tools")


def is_coroutine_result(value: Any) -> bool:
    """Whether a sync-looking callable returned an awaitable (e.g. a partial of a coroutine)."""
    return asyncio.iscoroutine(value) or inspect.isawaitable(value)


def check_tool_settings(who: str, max_tool_calls: Any, tool_errors: Any,
                        task: str | None = None) -> None:
    """Check ``max_tool_calls`` and ``tool_errors`` of an Agent or a Task.

    Raises:
        ToolDefinitionError: a value of the wrong type or out of range.
    """
    if max_tool_calls is not None and (isinstance(max_tool_calls, bool) or
                                       not isinstance(max_tool_calls, int) or
                                       max_tool_calls < 0):
        raise ToolDefinitionError(f"{who}: max_tool_calls must be an integer >= 0, not "
                                  f"{max_tool_calls!r}", task=task, field="max_tool_calls")
    if tool_errors is not None and tool_errors not in ("return", "raise"):
        raise ToolDefinitionError(f"{who}: tool_errors must be 'return' or 'raise', not "
                                  f"{tool_errors!r}", task=task, field="tool_errors")


def combined_tools(agent: Any, task: Any) -> list[Any]:
    """An agent's tools and a task's, the task's added; the same tool given to both
    counts once (PraisonAI scripts often do). Only a list counts: a Mock agent has a
    Mock for every attribute."""
    found: list[Any] = []
    for owner in (agent, task):
        tools = getattr(owner, "tools", None)
        for item in tools if isinstance(tools, (list, tuple)) else []:
            if not any(_same(item, known) for known in found):
                found.append(item)
    return found


def _same(a: Any, b: Any) -> bool:
    # Identity, or one function that crossed to this process twice (pickled by value).
    if a is b:
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (code_a is not None and code_a == code_b and
            getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None) and
            getattr(a, "__ray_orch_tool__", None) == getattr(b, "__ray_orch_tool__", None))


def task_tool_problems(name: str, task: Any) -> list[ToolDefinitionError]:
    """The tool problems of one task with its agents (the workflow's static check).

    MCP servers not listed yet are started and listed here, once: a server that fails
    to start is an error before Ray starts or any model is called.
    """
    problems: list[ToolDefinitionError] = []
    try:
        check_tool_settings(f"task '{name}'", getattr(task, "max_tool_calls", None),
                            getattr(task, "tool_errors", None), task=name)
    except ToolDefinitionError as exc:
        problems.append(exc)
    for fieldname in ("agent", "fallback_agent"):
        agent = getattr(task, fieldname, None)
        tools = combined_tools(agent, task)
        if not tools or (agent is None and fieldname == "fallback_agent"):
            continue
        try:
            tool_specs(tools, who=f"task '{name}' ({fieldname} '"
                                  f"{getattr(agent, 'role', None)}')", probe=True)
        except ToolDefinitionError as exc:
            exc.task = name
            problems.append(exc)
    return problems


def server_specs(server: MCP) -> list[ToolSpec]:
    """One ``ToolSpec`` per tool ``server`` listed (empty until listed); tools that
    require MCP task support are left out, and the annotations set replay and approval
    (see ``mcp.py``)."""
    specs = []
    for t in server.listed or []:
        if t.get("task_support") == "required":
            continue  # ray-orch does not run MCP tasks: a call would always fail
        read_only = bool(t.get("read_only"))
        options = ToolOptions(timeout=server.timeout, replay=server.replay and not read_only,
                              requires_approval=server.approve_destructive and not read_only
                              and t.get("destructive", True) is not False)
        specs.append(ToolSpec(name=server.tool_name(t["name"]), server_tool=t["name"],
                              description=t.get("description") or t["name"],
                              parameters=t.get("parameters") or {"type": "object",
                                                                 "properties": {}},
                              server=server, options=options))
    return specs
