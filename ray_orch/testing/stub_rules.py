"""The stub server's scripting model: the request record, rules, faults and replies.

``StubRequest`` is what the stub logged of one request and what rules match against;
``StubRule`` is one scripted answer; ``FAULT_KINDS`` names the faults a rule or a fault
plan may inject. The public names are re-exported by :mod:`ray_orch.testing`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "StubRequest", "StubRule"]

#: Fault names accepted by ``add_rule(fault=...)`` and ``set_faults(kinds=...)``.
FAULT_KINDS = ("429", "500", "503", "401", "timeout", "malformed", "invalid_json")


@dataclass(kw_only=True)
class StubRequest:
    """One chat-completion request as the stub saw and answered it.

    Attributes:
        index: arrival order, from 0 (``clear()`` does not reset it).
        t_start: ``time.time()`` when the request arrived.
        t_end: ``time.time()`` when the answer was ready (None while in flight).
        model: the model name in the body (litellm strips the ``openai/`` prefix).
        messages: the chat messages as sent.
        prompt: the text of every message, joined with newlines (what rules match).
        response_format: the ``response_format`` sent, or None.
        stream: whether the client asked for ``stream: true``.
        status: the HTTP status sent; None if no answer was sent (client gone, stopped).
        fault: the fault injected (a ``FAULT_KINDS`` name or ``"rpm_limit"``), or None.
        reply: the message content sent, or None when no completion was sent.
        headers: the request headers, without Authorization or other credentials.
        body: the whole JSON body (other options: temperature, tools, ...).
        error: why a reply callable or handler failed (the stub then answers 500).
        chunk_times: for a streamed answer, ``time.time()`` as each content piece was
            written (the latency of a live stream is measured from these).
    """

    index: int
    t_start: float
    t_end: float | None = None
    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    response_format: dict[str, Any] | None = None
    stream: bool = False
    status: int | None = None
    fault: str | None = None
    reply: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict, repr=False)
    error: str | None = None
    chunk_times: list[float] = field(default_factory=list, repr=False)

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema of a ``json_schema`` response format, else None."""
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
            return schema if isinstance(schema, dict) else None
        return None

    @property
    def wants_json(self) -> bool:
        """True when the response format asks for JSON (``json_schema``/``json_object``)."""
        return (self.response_format or {}).get("type") in ("json_schema", "json_object")

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool`` messages of the request (results of earlier tool calls)."""
        return [m for m in self.messages if isinstance(m, dict) and m.get("role") == "tool"]

    @property
    def tools(self) -> list[str]:
        """The names of the tools offered (the body's ``tools``)."""
        return [str((t.get("function") or {}).get("name")) for t in self.body.get("tools") or []
                if isinstance(t, dict)]

    @property
    def duration(self) -> float | None:
        """Seconds between arrival and answer, or None while in flight."""
        return None if self.t_end is None else self.t_end - self.t_start


Match = str | re.Pattern[str] | Callable[[StubRequest], bool] | None
Reply = str | dict[str, Any] | list[Any] | Callable[[StubRequest], Any]


@dataclass(kw_only=True)
class StubRule:
    """A scripted answer for the requests it matches (made by ``add_rule``).

    Attributes:
        match: substring or regex searched in the prompt, a predicate on the
            ``StubRequest``, or None for every request.
        reply: what to answer (None: the server's default reply).
        latency: seconds before answering (None: the server's latency and jitter).
        fault: a ``FAULT_KINDS`` name to inject instead of a normal answer, or None.
        times: apply only to the first ``times`` matches (None: always).
        hits: how many requests this rule has matched so far (faulted ones included).
        served: how many replies it has sent (a list reply advances with this).
    """

    match: Match = None
    reply: Reply | None = None
    latency: float | None = None
    fault: str | None = None
    times: int | None = None
    hits: int = 0
    served: int = 0

    def matches(self, request: StubRequest) -> bool:
        """Whether this rule applies to ``request`` (ignores ``times``)."""
        return match_request(self.match, request)

    @property
    def exhausted(self) -> bool:
        """True once the rule has been used ``times`` times."""
        return self.times is not None and self.hits >= self.times


def match_request(match: Match, request: StubRequest) -> bool:
    """Whether ``match`` (a rule's or ``requests_matching``'s) selects ``request``."""
    if match is None:
        return True
    if isinstance(match, str):
        return match in request.prompt
    if isinstance(match, re.Pattern):
        return match.search(request.prompt) is not None
    if callable(match):
        return bool(match(request))
    check_match(match)
    return False


def check_match(match: Any) -> None:
    """Raise TypeError unless ``match`` is None, a str, a compiled regex or a callable."""
    if match is None or isinstance(match, (str, re.Pattern)) or callable(match):
        return
    raise TypeError(f"match must be a str, a compiled regex or a callable, not {type(match).__name__}")


def check_fault(fault: str | int | None) -> str | None:
    """``fault`` as a ``FAULT_KINDS`` name (None stays None); ValueError if unknown."""
    if fault is None:
        return None
    name = str(fault)
    if name not in FAULT_KINDS:
        raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULT_KINDS)}")
    return name


async def resolve_reply(reply: Any, nth: int, record: StubRequest) -> Any:
    """The value a scripted reply gives for ``record``: the ``nth`` item of a list
    (the last one repeats), a callable's (maybe awaited) result, or the reply itself."""
    if isinstance(reply, list):
        if not reply:
            raise ValueError("a list reply must not be empty")
        reply = reply[min(nth, len(reply) - 1)]
    if callable(reply):
        reply = reply(record)
        if inspect.isawaitable(reply):
            reply = await reply
    return reply
