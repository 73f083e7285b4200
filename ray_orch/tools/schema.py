"""JSON schemas for Python functions, from their type hints (pydantic) and docstrings.

``function_schema`` turns a function's parameters into the ``parameters`` object the
OpenAI ``tools`` format wants, and ``arguments_model`` into a pydantic model that checks
the arguments a model sends back before the function is called.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["arguments_model", "describe", "function_schema", "inner_callable", "unwrap_tool"]

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Example|Examples)"
                      r"\s*:\s*$")
_PARAM = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def describe(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The description of a function and of its parameters, from its docstring.

    The description is the text before the first section (``Args:``, ``Returns:``...);
    parameter descriptions come from the ``Args:`` section (Google style).

    Example:
        >>> def f(x: int) -> int:
        ...     '''Double a number.
        ...
        ...     Args:
        ...         x: the number.
        ...     '''
        ...     return 2 * x
        >>> describe(f)
        ('Double a number.', {'x': 'the number.'})
    """
    doc = inspect.getdoc(fn) or ""
    head: list[str] = []
    params: dict[str, str] = {}
    section = None
    last: str | None = None
    for line in doc.splitlines():
        match = _SECTION.match(line)
        if match:
            section = match.group(1)
            continue
        if section is None:
            head.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            param = _PARAM.match(line)
            if param and not line.startswith("        "):
                last = param.group(1).lstrip("*")
                params[last] = param.group(2).strip()
            elif last and line.strip():
                params[last] = f"{params[last]} {line.strip()}".strip()
    return "\n".join(head).strip(), params


def unwrap_tool(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function under ``functools.partial``s, bound methods and ``functools.wraps``
    decorators: its hints and docstring describe the tool.

    Example:
        >>> import functools
        >>> def charge(amount: int, currency: str) -> str: ...
        >>> unwrap_tool(functools.partial(charge, currency="EUR")) is charge
        True
    """
    for _ in range(32):
        inner = inner_callable(fn)
        if inner is None:
            break
        fn = inner
    return fn


def inner_callable(fn: Any) -> Any:
    """What ``fn`` wraps (a partial's function, a method's, a decorator's), or None."""
    if isinstance(fn, functools.partial):
        return fn.func
    if inspect.ismethod(fn):
        return fn.__func__
    return getattr(fn, "__wrapped__", None)


def _bound_keywords(fn: Any) -> set[str]:
    """The parameters a ``functools.partial`` (at any depth) fixed by keyword."""
    bound: set[str] = set()
    for _ in range(32):
        if isinstance(fn, functools.partial):
            bound |= set(fn.keywords)
        fn = inner_callable(fn)
        if fn is None:
            break
    return bound


def arguments_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (extra arguments are refused). Through a
    ``functools.partial`` or a bound method, only what is left for the caller to give.

    Raises:
        TypeError: a parameter is ``*args``/``**kwargs``, positional-only, or has no type hint.
        Exception: pydantic cannot build a model of the hints (its own error).
    """
    signature = inspect.signature(fn)
    target = unwrap_tool(fn)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise TypeError(f"its type hints cannot be resolved ({exc})") from exc
    _, docs = describe(target)
    bound = _bound_keywords(fn)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name in bound:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"parameter '{param.name}' is *args/**kwargs; a model can only "
                            "pass named arguments")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"parameter '{param.name}' is positional-only")
        if param.name not in hints:
            raise TypeError(f"parameter '{param.name}' has no type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name],
                              Field(default, description=docs.get(param.name)))
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    return create_model(f"{name}_arguments", __config__=config, **fields)  # type: ignore[call-overload,no-any-return]


def function_schema(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """The JSON schema of ``fn``'s parameters (an ``object`` schema).

    Raises:
        TypeError, pydantic errors: the parameters cannot become a schema.

    Example:
        >>> def lookup(customer: str, limit: int = 3) -> str:
        ...     return customer
        >>> function_schema(lookup, "lookup")["required"]
        ['customer']
    """
    schema = arguments_model(fn, name).model_json_schema()
    schema.pop("title", None)
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema
