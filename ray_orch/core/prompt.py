"""Prompt building: description with placeholders filled, selected context, budgets.

Context selection is what makes the guide's "Context Management Strategies" real:
``context_fields`` keeps only the named fields of structured upstream outputs, and a
token budget with a declared overflow policy (``keep_recent``, ``summarize``, ``fail``)
replaces a silent provider error on a too-long prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from ray_orch.core.output import TaskOutput

__all__ = ["ContextItem", "PromptTask", "fill_placeholders", "placeholders", "render_context",
           "task_prompt"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders in a description."""
    return set(_PLACEHOLDER.findall(text))


def fill_placeholders(text: str, values: Mapping[str, Any] | None) -> str:
    """Fill ``{name}`` from ``values``; leave unknown braces (JSON examples) untouched."""
    if not values:
        return text
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


class PromptTask(Protocol):
    """What a prompt reads of a task (``policy``'s ``Task`` is one): core imports no
    layer above it, not even for types."""

    @property
    def description(self) -> str:
        """What to do, with ``{placeholders}``."""
        ...

    @property
    def expected_output(self) -> str:
        """What a good answer looks like."""
        ...

    @property
    def task_type(self) -> str:
        """``"task"``, ``"decision"`` or ``"loop"``."""
        ...

    @property
    def condition(self) -> Any:
        """A decision's routes, ``{answer: [task, ...]}`` (None otherwise)."""
        ...

    @property
    def context_fields(self) -> list[str] | None:
        """Only these fields of structured upstream outputs enter the prompt."""
        ...

    def output_schema(self) -> type[BaseModel] | None:
        """The pydantic model the answer must follow, if any."""
        ...


@dataclass(kw_only=True)
class ContextItem:
    """One upstream output as it enters a prompt."""

    name: str
    text: str
    tokens: int = 0


@dataclass(kw_only=True)
class PromptParts:
    """The pieces of a task prompt (the cache key uses the first three)."""

    description: str
    expected_output: str = ""
    context: list[ContextItem] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    feedback: str | None = None
    schema_hint: str | None = None

    def context_text(self) -> str:
        return "\n\n".join(f"--- {item.name} ---\n{item.text}" for item in self.context)

    def render(self) -> str:
        parts = [self.description.strip()]
        if self.expected_output:
            parts.append(f"Expected output: {self.expected_output}")
        if self.context:
            parts.append("Context from previous tasks:\n" + self.context_text())
        if self.missing:
            listed = ", ".join(f"{name} ({why})" for name, why in sorted(self.missing.items()))
            parts.append(f"Note: some context is missing: {listed}. Work with what is available "
                         "and say what could not be covered.")
        if self.schema_hint:
            parts.append(self.schema_hint)
        if self.feedback:
            parts.append("Your previous answer was rejected: "
                         f"{self.feedback}\nFix this in your new answer.")
        return "\n\n".join(parts)


def _select(data: Any, fields: list[str]) -> dict[str, Any]:
    return {name: data[name] for name in fields if isinstance(data, dict) and name in data}


def _structured(output: TaskOutput) -> dict[str, Any] | None:
    if output.json_dict is not None:
        return output.json_dict
    if output.pydantic is not None and hasattr(output.pydantic, "model_dump"):
        return dict(output.pydantic.model_dump(mode="json"))
    try:
        value = json.loads(output.raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def render_output(output: TaskOutput, fields: list[str] | None) -> str:
    """One upstream output as prompt text (only ``fields`` when given)."""
    if output.iterations is not None:
        return "\n".join(f"[{i}] {render_output(item, fields)}"
                         for i, item in enumerate(output.iterations))
    if fields:
        data = _structured(output)
        if data is not None:
            return json.dumps(_select(data, fields), ensure_ascii=False, default=str)
    return output.raw


def render_context(context: Mapping[str, TaskOutput], fields: list[str] | None) -> list[ContextItem]:
    """Render upstream outputs in their given order."""
    return [ContextItem(name=name, text=render_output(out, fields)) for name, out in context.items()]


def task_prompt(task: PromptTask, inputs: Mapping[str, Any] | None, context: Mapping[str, TaskOutput],
                missing: Mapping[str, str] | None = None) -> PromptParts:
    """The prompt parts of one task run (feedback is added per attempt)."""
    schema = task.output_schema()
    hint = None
    if task.task_type in ("decision", "loop") and task.condition:
        from ray_orch.core.routing import route_keys

        keys = ", ".join(route_keys(task.condition))
        hint = ("Decide which one applies and answer with JSON "
                f'{{"decision": "<one of: {keys}>"}}, and nothing else.')
    elif schema is not None:
        hint = ("Answer with a JSON object that follows this schema, and nothing else:\n"
                + json.dumps(schema.model_json_schema()))
    return PromptParts(description=fill_placeholders(task.description, inputs),
                       expected_output=task.expected_output,
                       context=render_context(context, task.context_fields),
                       missing=dict(missing or {}), schema_hint=hint)
