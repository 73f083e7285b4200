"""Decisions: how a decision task's answer picks its route.

The model is asked for structured output constrained to the condition's keys (an enum),
so a provider that honours JSON schemas can only answer a valid key. Answers are still
normalised (case, whitespace, quotes, ``-``/``_``), because not every provider constrains
output. No match is never silent: the answer is re-asked with the allowed keys stated,
then the ``"default"`` route is taken if declared, else ``DecisionError``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, create_model

__all__ = ["DEFAULT_KEYS", "decision_schema", "match_route", "route_keys", "route_targets"]

DEFAULT_KEYS = ("default", "*")
_SEPARATORS = re.compile(r"[\s_\-]+")


def route_keys(condition: dict[str, Any]) -> list[str]:
    """The answerable keys of a condition (without the default route)."""
    return [key for key in condition if key not in DEFAULT_KEYS]


def route_targets(condition: dict[str, Any], key: str) -> list[str]:
    """The tasks a route starts (a single name is accepted for a one-task route)."""
    targets = condition.get(key, [])
    if isinstance(targets, str):
        return [targets]
    return list(targets or [])


def default_key(condition: dict[str, Any]) -> str | None:
    """The declared default route's key, if any."""
    return next((key for key in DEFAULT_KEYS if key in condition), None)


def decision_schema(condition: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model whose one required field is an enum of the condition's keys."""
    keys = tuple(route_keys(condition))
    field_type: Any = Literal[keys] if keys else str  # type: ignore[valid-type]
    return create_model("Decision", decision=(field_type, ...))


def _norm(text: str) -> str:
    return _SEPARATORS.sub(" ", text.strip().strip("\"'`.!,;:").lower()).strip()


def match_route(answer: str, condition: dict[str, Any]) -> str | None:
    """The condition key an answer names, or None.

    Accepts ``{"decision": "Technical"}`` JSON or plain text; normalises case,
    whitespace and separators; plain text that contains exactly one key as a word also
    matches (``"This is a billing question."`` -> ``"billing"``).

    Example:
        >>> match_route(' {"decision": "Needs_Escalation"} ', {"resolved": [], "needs escalation": []})
        'needs escalation'
    """
    text = answer
    try:
        data = json.loads(answer)
    except (TypeError, ValueError):
        data = None
    if isinstance(data, dict):
        value = data.get("decision", next(iter(data.values()), "")) if data else ""
        text = str(value)
    elif isinstance(data, str):
        text = data
    keys = {_norm(key): key for key in route_keys(condition)}
    wanted = _norm(text)
    if wanted in keys:
        return keys[wanted]
    found = [key for norm, key in keys.items() if re.search(rf"\b{re.escape(norm)}\b", wanted)]
    return found[0] if len(found) == 1 else None
