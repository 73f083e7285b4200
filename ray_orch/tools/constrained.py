"""Tool calls through constrained JSON output, for models without native tool calling.

The embedded offline model (llama.cpp behind the lean client) gets the tool choice and
its arguments as one JSON schema through ``response_format``: the reply is either
``{"tool": "<name>", "arguments": {...}}`` or ``{"tool": "final_answer", "answer": ...}``,
and the server's grammar guarantees it parses. Results go back as a user message (small
chat templates know no ``tool`` role).

Used when the agent's model is the embedded one, or when its llm options say
``tool_mode="json"``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .spec import ToolSpec

__all__ = ["FINAL", "choice_schema", "parse_choice", "protocol_prompt", "results_message"]

FINAL = "final_answer"


def choice_schema(specs: list[ToolSpec],
                  output: type[BaseModel] | dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``response_format`` whose instances are one tool call or the final answer.

    Example:
        >>> from ray_orch.tools.spec import tool_specs
        >>> def lookup_order(customer: str) -> str:
        ...     '''Look up an order.'''
        ...     return "A-1"
        >>> fmt = choice_schema(tool_specs([lookup_order], who="example"))
        >>> [b["properties"]["tool"]["const"] for b in fmt["json_schema"]["schema"]["anyOf"]]
        ['lookup_order', 'final_answer']
    """
    answer: dict[str, Any] = {"type": "string"}
    if isinstance(output, dict):
        answer = output
    elif output is not None:
        answer = output.model_json_schema()
    branches = [{"type": "object",
                 "properties": {"tool": {"type": "string", "const": spec.name},
                                "arguments": spec.parameters},
                 "required": ["tool", "arguments"]} for spec in specs]
    branches.append({"type": "object",
                     "properties": {"tool": {"type": "string", "const": FINAL},
                                    "answer": answer},
                     "required": ["tool", "answer"]})
    return {"type": "json_schema",
            "json_schema": {"name": "tool_choice", "schema": {"anyOf": branches}}}


def protocol_prompt(specs: list[ToolSpec]) -> str:
    """The instructions added to the system message: the tools and the reply format."""
    lines = ["You can use tools. Reply with JSON only: either",
             '{"tool": "<tool name>", "arguments": {...}} to call one tool, or',
             f'{{"tool": "{FINAL}", "answer": ...}} when you can answer.', "Tools:"]
    for spec in specs:
        lines.append(f"- {spec.name}: {spec.description} Arguments schema: "
                     f"{json.dumps(spec.parameters)}")
    return "\n".join(lines)


def parse_choice(text: str, turn: int) -> tuple[list[dict[str, Any]], str]:
    """``(tool_calls, final_text)`` of a constrained reply: one call, or the answer.

    A reply that is not a choice object is taken as the final answer text.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return [], text
    if not isinstance(data, dict) or "tool" not in data:
        return [], text
    if data["tool"] == FINAL:
        answer = data.get("answer", "")
        return [], answer if isinstance(answer, str) else json.dumps(answer)
    call = {"id": f"json_call_{turn}", "type": "function",
            "function": {"name": str(data["tool"]),
                         "arguments": json.dumps(data.get("arguments") or {})}}
    return [call], ""


def results_message(results: list[tuple[str, str, str]]) -> dict[str, Any]:
    """One user message with the results of ``(name, arguments, result)`` calls."""
    body = "\n".join(f"Result of {name}({args}): {result}" for name, args, result in results)
    return {"role": "user",
            "content": f"{body}\nCall another tool, or give the {FINAL} if you can answer."}
