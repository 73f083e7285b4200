"""One task run: attempts with retries, output parsing, guardrails, then the fallback agent.

This is plain Python shared by ``Task.execute()`` (in-process) and the agent actors, so
both behave the same. Two retry budgets, as the guide uses them:

- ``max_retries``: retries after an exception; only retryable ones (rate limits,
  timeouts, 5xx, connection errors, unknown errors), never auth or bad-request errors;
  exponential backoff with jitter from ``retry_delay``, honouring ``Retry-After``;
- ``validation_steps``: retries after the answer failed its schema or a guardrail; the
  rejection is fed back into the next prompt.

``TaskOutput.metadata["retry_count"]`` is the exact number of retries that happened.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ._agent import Agent, role_of
from ._budget import apply_budget
from ._errors import (
    DecisionError,
    GuardrailFailedError,
    LLMError,
    OutputValidationError,
    RayOrchError,
    TaskFailedError,
    TaskTimeoutError,
)
from ._llm import error_kind
from ._local_decide import (
    decide_hosted,
    decide_locally,
    decision_value,
    uses_local_decisions,
    wants_logprobs,
)
from ._output import GuardrailResult, TaskOutput
from ._prompt import PromptParts, task_prompt
from ._routing import decision_schema, default_key, match_route, route_keys
from ._task import Task

__all__ = ["RunInputs", "parse_structured", "run_attempts", "run_local"]

_MAX_BACKOFF = 30.0


class _Rejected(Exception):
    """An answer that came back but failed its schema or a guardrail."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "invalid_output" | "guardrail" | "decision"


@dataclass(kw_only=True)
class RunInputs:
    """What the engine hands one task run."""

    inputs: dict[str, Any] | None = None
    context: dict[str, TaskOutput] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    iteration: int | None = None


# -- parsing ---------------------------------------------------------------------------

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


# -- guardrails ------------------------------------------------------------------------

class _Verdict(BaseModel):
    passes: bool
    reason: str = ""


async def _check_guardrails(task: Task, agent: Any, output: TaskOutput,
                            calls: list[dict[str, Any]]) -> TaskOutput:
    for guard in task.guardrails:
        if isinstance(guard, str):
            verdict = await _judge(agent, guard, output, calls)
            if not verdict.passes:
                raise _Rejected(f"guardrail '{guard}' failed: {verdict.reason or 'no reason'}",
                                kind="guardrail")
            continue
        result = guard(output)
        if asyncio.iscoroutine(result):
            result = await result
        ok, error, replacement = _verdict_of(result)
        if not ok:
            name = getattr(guard, "__name__", "guardrail")
            raise _Rejected(f"{name}: {error or 'rejected'}", kind="guardrail")
        if isinstance(replacement, TaskOutput):
            output = replacement
        elif isinstance(replacement, str):
            output = output.model_copy(update={"raw": replacement})
    return output


def _verdict_of(result: Any) -> tuple[bool, str | None, Any]:
    if isinstance(result, GuardrailResult):
        return result.success, result.error, result.result
    if isinstance(result, tuple) and result:
        ok = bool(result[0])
        detail = result[1] if len(result) > 1 else None
        if ok:
            return True, None, detail
        return False, str(detail) if detail is not None else None, None
    return bool(result), None, None


async def _judge(agent: Any, rule: str, output: TaskOutput,
                 calls: list[dict[str, Any]]) -> _Verdict:
    if not isinstance(agent, Agent):
        raise TaskFailedError(f"string guardrail '{rule}' needs an Agent with a model to judge it")
    prompt = (f"Check this output against the rule.\nRule: {rule}\n\nOutput:\n{output.raw}\n\n"
              "Does the output satisfy the rule? Answer with JSON {\"passes\": true|false, "
              "\"reason\": \"...\"}.")
    result = await agent.acomplete(prompt, output_schema=_Verdict)
    calls.append(_call_record(result, "guardrail"))
    return parse_structured(result.text, _Verdict)  # type: ignore[return-value]


# -- attempts --------------------------------------------------------------------------

def _call_record(result: Any, outcome: str) -> dict[str, Any]:
    return {"model": result.model, "duration_s": result.duration_s,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "cost_usd": result.cost_usd,
            "outcome": outcome}


async def _ask(agent: Any, prompt: str, schema: type[BaseModel] | None,
               calls: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One model call; returns (text, model)."""
    if isinstance(agent, Agent):
        started = time.perf_counter()
        try:
            result = await agent.acomplete(prompt, output_schema=schema)
        except LLMError as exc:
            calls.append({"model": agent.model, "duration_s": time.perf_counter() - started,
                          "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                          "outcome": error_kind(exc)})
            raise
        calls.append(_call_record(result, "success"))
        return result.text, result.model
    # Any object with chat(prompt) -> str: the guide's Mock agents, or user adapters.
    reply = agent.chat(prompt)
    if asyncio.iscoroutine(reply):
        reply = await reply
    return str(reply), None


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _Rejected):
        return True
    if isinstance(exc, LLMError):
        return exc.retryable
    # Our own typed errors are decisions, not accidents; anything else may pass on retry.
    return not isinstance(exc, (RayOrchError, asyncio.CancelledError))


async def run_attempts(task: Task, agent: Any, run: RunInputs, *,
                       parts: PromptParts | None = None) -> TaskOutput:
    """Run ``task`` with ``agent`` until an answer passes or the retry budgets run out.

    Args:
        task: the task (its retry options, schema and guardrails apply).
        agent: an ``Agent``, or any object with ``chat(prompt) -> str``.
        run: inputs, upstream outputs and missing context.
        parts: prompt parts already built (the caller may have built them for a cache key).

    Returns:
        The output, with ``retry_count``, tokens, cost, model and timing in metadata.

    Raises:
        OutputValidationError, GuardrailFailedError, TaskFailedError: budgets exhausted,
            or an error that retrying cannot fix.
    """
    parts = parts or task_prompt(task, run.inputs, run.context, run.missing)
    budget_note = await apply_budget(task, agent, parts) if isinstance(agent, Agent) else None
    deciding = task.task_type == "decision" and bool(task.condition)
    schema = decision_schema(task.condition or {}) if deciding else task.output_schema()
    calls: list[dict[str, Any]] = []
    counts = {"exception": 0, "validation": 0}
    started = time.perf_counter()
    model_used: list[str | None] = [None]

    def should_retry(exc: BaseException) -> bool:
        if not _is_retryable(exc):
            return False
        kind, budget = (("validation", task.validation_steps) if isinstance(exc, _Rejected)
                        else ("exception", task.max_retries))
        if counts[kind] >= budget:
            return False
        counts[kind] += 1
        return True

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Rejected):
            return 0.0
        n = counts["exception"]
        delay = min(_MAX_BACKOFF, task.retry_delay * (2 ** max(0, n - 1)))
        delay += random.uniform(0, task.retry_delay / 2) if task.retry_delay else 0.0
        if isinstance(exc, LLMError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, _MAX_BACKOFF))
        return delay

    async def attempt() -> TaskOutput:
        if deciding and uses_local_decisions(agent):
            text, model = await decide_locally(agent, task, parts, calls)
        elif deciding and wants_logprobs(agent):
            text, model = await decide_hosted(agent, task, parts.render(), schema, calls)
        else:
            text, model = await _ask(agent, parts.render(), schema, calls)
        model_used[0] = model
        output = TaskOutput(raw=text, description=parts.description, task_id=task.id,
                            agent=role_of(agent))
        if deciding:
            try:
                _decide(task, text, output, parts)
            except _Rejected:
                _mark_rejected(calls, "decision")
                raise
        elif schema is not None:
            try:
                parsed = parse_structured(text, schema)
            except ValueError as exc:
                parts.feedback = f"the answer did not match the required JSON schema ({exc})"
                _mark_rejected(calls, "invalid_output")
                raise _Rejected(str(exc), kind="invalid_output") from None
            output.pydantic = parsed
            output.json_dict = parsed.model_dump(mode="json")
        try:
            output = await _check_guardrails(task, agent, output, calls)
        except _Rejected as exc:
            parts.feedback = str(exc)
            _mark_rejected(calls, exc.kind)
            raise
        return output

    retrying = AsyncRetrying(retry=retry_if_exception(should_retry), wait=wait, reraise=True)
    try:
        output: TaskOutput = await retrying(attempt)
    except _Rejected as exc:
        if exc.kind == "decision":
            raise DecisionError(f"decision task '{task.id}': {exc} after {_attempts(counts)} "
                                "attempts, and its condition has no 'default' route",
                                task=task.id) from None
        cls = OutputValidationError if exc.kind == "invalid_output" else GuardrailFailedError
        err: TaskFailedError = cls(
            f"task '{task.id}': {exc} (after {_attempts(counts)} attempts; "
            f"validation_steps={task.validation_steps})", task=task.id)
        err.attempt_log = calls  # type: ignore[attr-defined]
        raise err from None
    except Exception as exc:
        if isinstance(exc, TaskFailedError):
            raise
        err = TaskFailedError(
            f"task '{task.id}' failed after {_attempts(counts)} attempts "
            f"(max_retries={task.max_retries}): {type(exc).__name__}: {exc}", task=task.id)
        err.attempt_log = calls  # type: ignore[attr-defined]
        err.retryable = _is_retryable(exc)  # type: ignore[attr-defined]
        raise err from exc
    tokens_in = sum(c["prompt_tokens"] for c in calls)
    tokens_out = sum(c["completion_tokens"] for c in calls)
    output.metadata.update({
        "execution_time": time.perf_counter() - started,
        "retry_count": counts["exception"] + counts["validation"],
        "tokens_used": tokens_in + tokens_out,
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "cost_usd": sum(c["cost_usd"] for c in calls),
        "model": model_used[0],
        "llm_calls": calls,
    })
    if parts.missing:
        output.metadata["missing_context"] = dict(parts.missing)
    if budget_note:
        output.metadata["context_budget"] = budget_note
    if run.iteration is not None:
        output.metadata["iteration"] = run.iteration
    return output


def _decide(task: Task, text: str, output: TaskOutput, parts: PromptParts) -> None:
    condition = task.condition or {}
    route = match_route(text, condition)
    if route is None:
        route = default_key(condition)
        if route is None:
            keys = ", ".join(repr(k) for k in route_keys(condition))
            parts.feedback = f"the answer {text.strip()!r} is not one of: {keys}"
            raise _Rejected(f"answer {text.strip()[:200]!r} matches none of {keys}",
                            kind="decision")
    output.json_dict = {"decision": route}
    output.metadata["decision"] = decision_value(route, text)


def _mark_rejected(calls: list[dict[str, Any]], kind: str) -> None:
    # The call itself succeeded; its answer did not pass. Metrics count it as a failed
    # attempt of that kind.
    for call in reversed(calls):
        if call["outcome"] == "success":
            call["outcome"] = kind
            return


def _attempts(counts: dict[str, int]) -> int:
    return 1 + counts["exception"] + counts["validation"]


# -- a whole task: breaker, cache, primary agent, fallback -----------------------------

Runner = Callable[[Any], Awaitable[TaskOutput]]


async def run_with_fallback(task: Task, call: Runner) -> TaskOutput:
    """Run the task with its agent, then with ``fallback_agent`` if that fails.

    ``call(agent)`` runs the task's attempts with one agent: in-process for
    ``Task.execute()``, or on that agent's pool in a process.
    """
    try:
        return await call(task.agent)
    except TaskFailedError as primary_error:
        # Any exhausted primary, whether by retries or by an error retrying cannot fix
        # (a revoked key, a model that is gone), is what the fallback agent is for.
        if task.fallback_agent is None:
            raise
        output = await call(task.fallback_agent)
        primary_calls = getattr(getattr(primary_error, "cause", None) or primary_error,
                                "attempt_log", [])
        if primary_calls:
            # The primary's calls were made and paid for: they count in the output too.
            meta = output.metadata
            meta["llm_calls"] = [*primary_calls, *meta.get("llm_calls", [])]
            meta["tokens_used"] = meta.get("tokens_used", 0) + sum(
                c.get("prompt_tokens", 0) + c.get("completion_tokens", 0) for c in primary_calls)
            meta["cost_usd"] = meta.get("cost_usd", 0.0) + sum(
                c.get("cost_usd", 0.0) for c in primary_calls)
        output.metadata["fallback"] = True
        output.metadata["fallback_from"] = role_of(task.agent)
        # From a pool, the error is Ray's RayTaskError wrapper; its .cause is ours.
        cause = getattr(primary_error, "cause", None)
        output.metadata["primary_error"] = str(cause if isinstance(cause, BaseException)
                                               else primary_error)
        return output


async def run_local(task: Task, inputs: dict[str, Any] | None) -> TaskOutput:
    """``Task.execute()``: everything in this process, no Ray."""
    from ._breaker import breaker_guard

    context = dict(task._context_outputs)
    if not context and task.context:
        # Outside a process, upstream tasks that already ran feed this one (the guide's
        # CheckpointedProcess runs task.execute() in order and sets task.result on resume).
        peers = task._peers or {}
        for ref in task.context:
            upstream = ref if isinstance(ref, Task) else peers.get(ref)
            if upstream is not None and upstream.result is not None:
                context[upstream.id] = upstream.result
    run = RunInputs(inputs=inputs, context=context, missing=dict(task._missing_context))
    task.status = "running"

    async def body() -> TaskOutput:
        from ._caching import from_cache, key_for, local_cache, ttl_for

        ttl = ttl_for(task, process_cache=False)
        if ttl is None:
            return await run_with_fallback(task, lambda agent: run_attempts(task, agent, run))
        key = key_for(task, task.agent, task_prompt(task, run.inputs, run.context, run.missing))
        hit = local_cache().get(key)
        if hit is not None:
            return from_cache(hit)
        output = await run_with_fallback(task, lambda agent: run_attempts(task, agent, run))
        output.metadata["cache"] = "miss"
        local_cache().put(key, output.model_dump(mode="json"), ttl=ttl)
        return output

    try:
        coro = breaker_guard(task, body)
        output = await (asyncio.wait_for(coro, task.timeout) if task.timeout else coro)
    except asyncio.TimeoutError:
        task.status = "failed"
        error = TaskTimeoutError(f"task '{task.id}' exceeded its timeout of {task.timeout} s",
                                 task=task.id)
        task.error = error
        raise error from None
    except BaseException as exc:
        task.status = "failed"
        task.error = exc
        raise
    task.status = "completed"
    task.result = output
    return output
