"""Guardrails: what checks an output before it stands, and the rejection that sends an
attempt back (with feedback) under the task's ``validation_steps``."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from ray_orch.core.errors import GuardrailFailedError, TaskFailedError
from ray_orch.core.output import GuardrailResult, TaskOutput
from ray_orch.model.client import LLMConfig


class Task(Protocol):
    """What guardrails read of a task (``policy.definition.TaskDefinition`` is one; a
    protocol, so that this module does not import the definitions that import it)."""

    @property
    def id(self) -> str: ...

    @property
    def guardrails(self) -> list[Any]: ...

__all__ = ["Rejected", "call_record", "check_guardrails", "parse_structured"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_structured(text: str, schema: type[BaseModel]) -> BaseModel:
    """Parse a reply into ``schema``, tolerating code fences and prose around the JSON.

    Raises:
        ValueError: no valid instance of the schema could be read.
    """
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    last: Exception | None = None
    for candidate in candidates:
        try:
            return schema.model_validate_json(candidate)
        except (ValidationError, ValueError) as exc:
            last = exc
    raise ValueError(f"reply is not valid {schema.__name__} JSON: {last}")


class Rejected(Exception):
    """An answer that came back but failed its schema or a guardrail."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "invalid_output" | "guardrail" | "decision"




class _Verdict(BaseModel):
    passes: bool
    reason: str = ""


async def check_guardrails(task: Task, agent: Any, output: TaskOutput,
                            calls: list[dict[str, Any]]) -> TaskOutput:
    # The task's guardrails, then its agent's (PraisonAI's Agent(guardrails=...)).
    own = getattr(agent, "guardrails", None)
    for guard in [*task.guardrails, *(own if isinstance(own, list) else [])]:
        if isinstance(guard, str):
            verdict = await _judge(agent, guard, output, calls)
            if not verdict.passes:
                raise Rejected(f"guardrail '{guard}' failed: {verdict.reason or 'no reason'}",
                                kind="guardrail")
            continue
        name = getattr(guard, "__name__", None) or type(guard).__name__
        try:
            result = guard(output)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:
            # A guardrail that raises is a bug in the check, not a bad answer: asking the
            # model again cannot fix it.
            raise GuardrailFailedError(
                f"task '{task.id}': guardrail '{name}' raised {type(exc).__name__}: {exc}",
                task=task.id, guardrail=name, attempt_log=calls, original=exc) from exc
        ok, error, replacement = _verdict_of(result, task=task, name=name, calls=calls)
        if not ok:
            raise Rejected(f"{name}: {error or 'rejected'}", kind="guardrail")
        if isinstance(replacement, TaskOutput):
            output = replacement
        elif isinstance(replacement, str):
            output = output.model_copy(update={"raw": replacement})
    return output


def _verdict_of(result: Any, *, task: Task, name: str,
                calls: list[dict[str, Any]]) -> tuple[bool, str | None, Any]:
    """A guardrail's verdict: exactly ``GuardrailResult``, ``bool`` or ``(bool, value)``.

    Raises:
        GuardrailFailedError: any other return value (a str such as ``"FAIL: ..."`` is
            not a verdict, and taking it as truthy would pass every answer).
    """
    if isinstance(result, GuardrailResult):
        return result.success, result.error, result.result
    if isinstance(result, bool):
        return result, None, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        ok, detail = result
        if ok:
            return True, None, detail
        return False, str(detail) if detail is not None else None, None
    wrong = TypeError(f"guardrail '{name}' returned {type(result).__name__} {result!r:.100}; "
                      "a guardrail returns GuardrailResult, bool or (bool, value)")
    raise GuardrailFailedError(f"task '{task.id}': {wrong}", task=task.id, guardrail=name,
                               attempt_log=calls, original=wrong) from wrong


async def _judge(agent: Any, rule: str, output: TaskOutput,
                 calls: list[dict[str, Any]]) -> _Verdict:
    if not isinstance(getattr(agent, "llm_config", None), LLMConfig):  # an Agent's model
        raise TaskFailedError(f"string guardrail '{rule}' needs an Agent with a model to judge it")
    prompt = (f"Check this output against the rule.\nRule: {rule}\n\nOutput:\n{output.raw}\n\n"
              "Does the output satisfy the rule? Answer with JSON {\"passes\": true|false, "
              "\"reason\": \"...\"}.")
    result = await agent.acomplete(prompt, output_schema=_Verdict)
    calls.append(call_record(result, "guardrail"))
    return parse_structured(result.text, _Verdict)  # type: ignore[return-value]


# -- attempts --------------------------------------------------------------------------

def call_record(result: Any, outcome: str) -> dict[str, Any]:
    return {"model": result.model, "duration_s": result.duration_s,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "cost_usd": result.cost_usd,
            "outcome": outcome}
