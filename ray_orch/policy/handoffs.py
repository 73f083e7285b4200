"""Hand-offs (PraisonAI's ``Agent(handoffs=[other, ...])``): a tool call the model makes.

Each target becomes a tool ``transfer_to_<name>(message)`` of the agent: when the model
calls it, the target agent answers ``message`` (with its own tools, guardrails and
conversation) and its answer is the tool's result, which the model then uses. The call
shows in the output's ``metadata["tool_calls"]`` and as a ``tool_call`` event like any
tool. Hand-offs nest (a target may hand off in turn); ``max_handoffs`` bounds how many one
conversation makes, a call past it fails back to the model.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

from ray_orch.core.errors import InvalidTaskFieldError, StepLimitError

__all__ = ["DEFAULT_MAX_HANDOFFS", "conversation", "handoff_tools"]

DEFAULT_MAX_HANDOFFS = 5
"""Hand-offs one conversation may make (PraisonAI bounds its chains at depth 10)."""

_made: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "ray_orch_handoffs", default=None)


@contextlib.contextmanager
def conversation() -> Iterator[None]:
    """Count the hand-offs made within the block (and in the tool calls it starts, which
    copy its context) against ``max_handoffs``; nested blocks share the outer count."""
    if _made.get() is not None:
        yield
        return
    token = _made.set([0])
    try:
        yield
    finally:
        _made.reset(token)


def _target_of(entry: Any, *, who: str) -> tuple[Any, str | None, str | None]:
    """``(agent, tool name, description)`` of one ``handoffs`` entry: an Agent, an
    ``(agent, payload_type)`` pair, or PraisonAI's ``Handoff`` (``.agent``)."""
    if isinstance(entry, tuple) and entry:
        entry = entry[0]
    name = getattr(entry, "tool_name_override", None)
    description = getattr(entry, "tool_description_override", None)
    agent = getattr(entry, "agent", entry)
    if not callable(getattr(agent, "achat", None)) or not isinstance(
            getattr(agent, "name", None), str):
        raise InvalidTaskFieldError(f"{who}: handoffs must be Agents (or (agent, payload) "
                                    f"pairs), not {entry!r}", field="handoffs")
    return agent, name, description


def handoff_tools(handoffs: Any, *, who: str, limit: int) -> list[Any]:
    """One ``transfer_to_<name>`` tool per hand-off target.

    Args:
        handoffs: the agent's ``handoffs=`` list.
        who: names the agent in errors.
        limit: ``max_handoffs``.

    Raises:
        InvalidTaskFieldError: a target that is not an Agent; a bad limit.

    Example:
        >>> from ray_orch import Agent
        >>> [t.name for t in handoff_tools([Agent(name="Billing Agent")], who="a", limit=3)]
        ['transfer_to_billing_agent']
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidTaskFieldError(f"{who}: max_handoffs must be a positive int, not "
                                    f"{limit!r}", field="max_handoffs")
    if handoffs is None:
        return []
    if not isinstance(handoffs, (list, tuple)):
        raise InvalidTaskFieldError(f"{who}: handoffs must be a list of Agents, not "
                                    f"{type(handoffs).__name__}", field="handoffs")
    return [_tool(*_target_of(entry, who=who), limit=limit) for entry in handoffs]


def _tool(target: Any, name: str | None, description: str | None, *, limit: int) -> Any:
    from ray_orch.tools.spec import ToolSpec

    slug = re.sub(r"[^a-z0-9]+", "_", target.name.lower()).strip("_") or "agent"
    name = name or f"transfer_to_{slug}"
    return ToolSpec(
        name=name, fn=_Transfer(target=target, name=name, limit=limit).__call__,
        description=description or (
            f"Hand the conversation to {target.name} ({target.role}): {target.goal}. Give "
            "the message it should answer; its answer comes back."),
        parameters={"type": "object", "required": ["message"],
                    "properties": {"message": {"type": "string",
                                               "description": "what the agent should answer"}}})


class _Transfer:
    """The body of a hand-off tool: the target answers the message."""

    def __init__(self, *, target: Any, name: str, limit: int) -> None:
        self.target, self.name, self.limit = target, name, limit

    def __repr__(self) -> str:
        return self.name

    async def __call__(self, message: str) -> str:
        with conversation():
            count = _made.get()
            assert count is not None
            if count[0] >= self.limit:
                raise StepLimitError(f"more than max_handoffs={self.limit} hand-offs in one "
                                     f"conversation (to '{self.target.name}')")
            count[0] += 1
            return str(await self.target.achat(message))
