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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from tenacity import RetryCallState

from ray_orch.core import trace
from ray_orch.core.errors import (
    DecisionError,
    GuardrailFailedError,
    LLMError,
    OutputValidationError,
    RateLimitError,
    RayOrchError,
    TaskFailedError,
    TaskTimeoutError,
    ToolCallError,
    ToolLoopError,
)
from ray_orch.core.output import TaskOutput
from ray_orch.core.prompt import PromptParts, task_prompt
from ray_orch.core.routing import decision_schema, default_key, match_route, route_keys
from ray_orch.model.client import error_kind
from ray_orch.policy.agent import Agent, role_of
from ray_orch.policy.budget import apply_budget
from ray_orch.policy.decide import decision_value
from ray_orch.policy.decide_hosted import decide_hosted, wants_logprobs
from ray_orch.policy.decide_local import decide_locally, uses_local_decisions
from ray_orch.policy.guardrails import Rejected, call_record, check_guardrails, parse_structured
from ray_orch.policy.retrying import retry_after_first
from ray_orch.tools.journal import predecessor_recorded
from ray_orch.tools.loop import ToolRun, answer_with_tools, tool_run_for

if TYPE_CHECKING:
    from ray_orch.policy.definition import TaskDefinition as Task

__all__ = ["RunInputs", "parse_structured", "run_attempts", "run_local"]

_MAX_BACKOFF = 30.0


@dataclass(kw_only=True)
class RunInputs:
    """What the engine hands one task run."""

    inputs: dict[str, Any] | None = None
    context: dict[str, TaskOutput] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    iteration: int | None = None
    on_token: Callable[[str, int], None] | None = None
    """Streams the answers: ``on_token(text, attempt)`` for each piece as it arrives."""
    feedback: str | None = None
    """Why a person rejected the last output: the prompt says so."""
    approve_tool: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
    """Asks a person about a call of a ``requires_approval`` tool (see ``tools.loop``)."""
    tool_journal: Any = None
    """Where the run journals completed tool calls (a ``ToolJournalRef``; None: nowhere)."""
    route_descriptions: dict[str, str] = field(default_factory=dict)
    """A decision's route keys by what they lead to (the run's graph), for scoring."""
    memory: Any = None
    """The run's memory settings (``policy.recall.MemoryPlan``; None: agents' own only)."""


# -- parsing ---------------------------------------------------------------------------

# -- guardrails ------------------------------------------------------------------------

async def _ask(agent: Any, prompt: str, schema: type[BaseModel] | None,
               calls: list[dict[str, Any]],
               on_token: Callable[[str], None] | None = None) -> tuple[str, str | None]:
    """One model call; returns (text, model). With ``on_token`` the answer streams."""
    if isinstance(agent, Agent):
        started = time.perf_counter()
        try:
            result = await agent.acomplete(prompt, output_schema=schema, on_token=on_token)
        except LLMError as exc:
            calls.append({"model": agent.model, "duration_s": time.perf_counter() - started,
                          "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                          "outcome": error_kind(exc)})
            raise
        calls.append(call_record(result, "success"))
        return result.text, result.model
    # Any object with chat(prompt) -> str: the guide's Mock agents, or user adapters
    # (user code: it acts once a predecessor handed off to it is recorded).
    await predecessor_recorded()
    reply = agent.chat(prompt)
    if asyncio.iscoroutine(reply):
        reply = await reply
    if on_token is not None:
        on_token("" if reply is None else str(reply))  # an adapter answers at once: one piece
    return ("" if reply is None else str(reply)), None


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, Rejected):
        return True
    if isinstance(exc, ToolCallError):  # tool_errors="raise": another attempt may do better
        return True
    if isinstance(exc, LLMError):
        return exc.retryable
    # Our own typed errors are decisions, not accidents; anything else may pass on retry.
    return not isinstance(exc, (RayOrchError, asyncio.CancelledError))


@dataclass(kw_only=True)
class _Attempts:
    """One ``run_attempts`` call: what its attempts share (counts, calls, prompt parts);
    its methods are the retry loop's callbacks and the run's two ends (error, metadata)."""

    task: Task
    agent: Any
    run: RunInputs
    parts: PromptParts
    schema: type[BaseModel] | None
    deciding: bool
    started: float
    tools: ToolRun | None
    calls: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"exception": 0, "validation": 0})
    model_used: str | None = None

    def waits_in_full(self, exc: BaseException) -> bool:
        """Whether ``exc``'s ``Retry-After`` can be honoured in full (it is never shortened).

        Args:
            exc: the error the last attempt raised.

        Returns:
            True when it is within the backoff cap or the task's remaining timeout.
        """
        task = self.task
        after = exc.retry_after if isinstance(exc, LLMError) else None
        if after is None or after <= _MAX_BACKOFF:
            return True
        left = task.timeout - (time.perf_counter() - self.started) if task.timeout else None
        return left is not None and after < left

    def should_retry(self, exc: BaseException) -> bool:
        """Whether to try again after ``exc``, counting the retry against its budget.

        Args:
            exc: the error the last attempt raised.

        Returns:
            True (one more retry counted) when it is retryable, can wait in full and its
            budget (``validation_steps`` or ``max_retries``) is not spent.
        """
        if not _is_retryable(exc) or not self.waits_in_full(exc):
            return False
        kind, budget = (("validation", self.task.validation_steps)
                        if isinstance(exc, Rejected) else ("exception", self.task.max_retries))
        if self.counts[kind] >= budget:
            return False
        self.counts[kind] += 1
        return True

    def wait(self, state: RetryCallState) -> float:
        """The delay before the next attempt.

        Args:
            state: tenacity's state of the retry loop (its outcome is the last error).

        Returns:
            0 after a rejected answer, else capped exponential backoff with jitter
            (never shorter than a ``Retry-After``).
        """
        task = self.task
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Rejected):
            return 0.0
        n = self.counts["exception"]
        delay = min(_MAX_BACKOFF, task.retry_delay * (2 ** max(0, n - 1)))
        delay += random.uniform(0, task.retry_delay / 2) if task.retry_delay else 0.0
        if isinstance(exc, LLMError) and exc.retry_after:
            delay = max(delay, exc.retry_after)  # past the cap only if waits_in_full
        return delay

    async def attempt(self) -> TaskOutput:
        """One attempt: the model call (with the tool loop if any) in an ``invoke_agent`` span.

        Returns:
            The output that passed its schema, decision and guardrails (else ``Rejected``).
        """
        task, agent, run, counts = self.task, self.agent, self.run, self.counts
        on_token = None
        if run.on_token is not None:
            number, stream = counts["exception"] + counts["validation"] + 1, run.on_token
            on_token = lambda text: stream(text, number)  # noqa: E731
        with trace.span(f"invoke_agent {role_of(agent) or 'agent'}",
                        {"gen_ai.operation.name": "invoke_agent",
                         "openinference.span.kind": "AGENT",
                         "gen_ai.agent.name": role_of(agent), "ray_orch.task": task.id,
                         "ray_orch.iteration": run.iteration,
                         "ray_orch.attempt": counts["exception"] + counts["validation"] + 1}):
            answer = await self.answer(on_token)
            return await self.checked(answer)

    async def answer(self, on_token: Callable[[str], None] | None) -> tuple[str, str | None]:
        """The model's answer: a decision scored by likelihood (the embedded model, or a
        hosted one that gives log-probabilities), the tool loop, or one call.

        Returns:
            ``(text, model)``.
        """
        agent, parts, schema, calls = self.agent, self.parts, self.schema, self.calls
        # A decision whose agent has tools takes the tool loop on every path, its final
        # answer still held to the routes' schema; without tools it may be scored.
        scored = self.deciding and self.tools is None and (
            uses_local_decisions(agent) or wants_logprobs(agent))
        if scored and uses_local_decisions(agent):
            answer = await decide_locally(agent, self.task, parts, calls,
                                          described=self.run.route_descriptions)
        elif scored:
            answer = await decide_hosted(agent, self.task, parts.render(), schema, calls)
        elif self.tools is not None:
            from ray_orch.policy.handoffs import conversation

            with conversation():  # the attempt's hand-offs count against max_handoffs
                return await answer_with_tools(agent, parts.render(), schema, calls,
                                               self.tools, on_token=on_token)
        else:
            return await _ask(agent, parts.render(), schema, calls, on_token)
        if on_token is not None:
            on_token(answer[0])  # a scored decision's answer comes whole: one piece
        return answer

    async def checked(self, answer: tuple[str, str | None]) -> TaskOutput:
        """The output of an answer, once it passed its schema, decision and guardrails.

        Args:
            answer: the reply's text and the model that wrote it.

        Returns:
            The output (parsed into the schema, or with its decision).

        Raises:
            Rejected: empty, unparsable, no route matched or a guardrail failed (the
                prompt's feedback says why for the next attempt).
        """
        task, parts, calls, schema = self.task, self.parts, self.calls, self.schema
        text, model = answer
        self.model_used = model
        if not text.strip():
            # An empty (or null) reply is not an answer: it is retried like invalid output.
            parts.feedback = "the answer was empty"
            _mark_rejected(calls, "invalid_output")
            raise Rejected("the model returned an empty reply", kind="invalid_output")
        output = TaskOutput(raw=text, description=parts.description, task_id=task.id,
                            agent=role_of(self.agent))
        if self.deciding:
            try:
                _decide(task, text, output, parts)
            except Rejected:
                _mark_rejected(calls, "decision")
                raise
        elif schema is not None:
            try:
                parsed = parse_structured(text, schema)
            except ValueError as exc:
                parts.feedback = f"the answer did not match the required JSON schema ({exc})"
                _mark_rejected(calls, "invalid_output")
                raise Rejected(str(exc), kind="invalid_output") from None
            output.pydantic = parsed
            output.json_dict = parsed.model_dump(mode="json")
        await predecessor_recorded()  # guardrails are user code
        try:
            output = await check_guardrails(task, self.agent, output, calls)
        except Rejected as exc:
            parts.feedback = str(exc)
            _mark_rejected(calls, exc.kind)
            raise
        return output

    def rejected_error(self, exc: Rejected) -> RayOrchError:
        """The typed error for an answer still rejected when ``validation_steps`` ran out.

        Args:
            exc: the last rejection.

        Returns:
            ``DecisionError``, ``OutputValidationError`` or ``GuardrailFailedError``.
        """
        task, counts = self.task, self.counts
        if exc.kind == "decision":
            return DecisionError(f"decision task '{task.id}': {exc} after {_attempts(counts)} "
                                 "attempts, and its condition has no 'default' route",
                                 task=task.id)
        cls = OutputValidationError if exc.kind == "invalid_output" else GuardrailFailedError
        return cls(f"task '{task.id}': {exc} (after {_attempts(counts)} attempts; "
                   f"validation_steps={task.validation_steps})", task=task.id,
                   attempt_log=self.calls)

    def failed_error(self, exc: Exception) -> TaskFailedError:
        """The typed error for an attempt's error that is not retried (again).

        Args:
            exc: the error (not a ``TaskFailedError``: those are raised as they are).

        Returns:
            ``RateLimitError`` (a Retry-After too long to honour), else ``TaskFailedError``.
        """
        task, counts = self.task, self.counts
        if isinstance(exc, LLMError) and not self.waits_in_full(exc):
            return RateLimitError(
                f"task '{task.id}': the provider asked to wait {exc.retry_after:g} s "
                f"(Retry-After), more than the {_MAX_BACKOFF:g} s backoff cap or the task's "
                f"remaining timeout; not retried sooner (after {_attempts(counts)} attempts)",
                task=task.id, retry_after=exc.retry_after, status_code=exc.status_code,
                attempt_log=self.calls, retryable=True)
        return TaskFailedError(
            f"task '{task.id}' failed after {_attempts(counts)} attempts "
            f"(max_retries={task.max_retries}): {type(exc).__name__}: {exc}", task=task.id,
            attempt_log=self.calls, retryable=_is_retryable(exc),
            tool_calls=self.tools.log if self.tools is not None else [])

    def finish(self, output: TaskOutput, budget_note: Any) -> TaskOutput:
        """Write the run's figures into the output's metadata.

        Args:
            output: the output that passed.
            budget_note: what the context budget cut, if anything.

        Returns:
            ``output``, with ``retry_count``, tokens, cost, model, timing and calls.
        """
        calls, counts = self.calls, self.counts
        tokens_in = sum(c["prompt_tokens"] for c in calls)
        tokens_out = sum(c["completion_tokens"] for c in calls)
        output.metadata.update({
            "execution_time": time.perf_counter() - self.started,
            "retry_count": counts["exception"] + counts["validation"],
            "tokens_used": tokens_in + tokens_out,
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "cost_usd": sum(c["cost_usd"] for c in calls),
            "model": self.model_used,
            "llm_calls": calls,
        })
        if self.tools is not None:
            output.metadata["tool_calls"] = self.tools.log
        if self.parts.missing:
            output.metadata["missing_context"] = dict(self.parts.missing)
        if budget_note:
            output.metadata["context_budget"] = budget_note
        if self.run.iteration is not None:
            output.metadata["iteration"] = self.run.iteration
        return output


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
    if run.feedback:
        parts.feedback = f"a reviewer rejected your previous answer: {run.feedback}"
    budget_note = await apply_budget(task, agent, parts) if isinstance(agent, Agent) else None
    memory = await _recall(task, agent, run, parts)
    # A decision, or one item of a loop whose items each take a decision.
    deciding = task.task_type in ("decision", "loop") and bool(task.condition)
    schema = decision_schema(task.condition or {}) if deciding else task.output_schema()
    started = time.perf_counter()
    tools = (tool_run_for(task, agent, inputs=run.inputs, context=run.context,
                          iteration=run.iteration, journal=run.tool_journal)
             if isinstance(agent, Agent) else None)
    tools = _with_memory_tools(task, agent, run, tools)
    if tools is not None:
        tools.approve = run.approve_tool
    attempts = _Attempts(task=task, agent=agent, run=run, parts=parts, schema=schema,
                         deciding=deciding, started=started, tools=tools)
    try:
        output: TaskOutput = await retry_after_first(
            attempts.attempt, should_retry=attempts.should_retry, wait=attempts.wait)
    except Rejected as exc:
        raise attempts.rejected_error(exc) from None
    except TaskFailedError as exc:
        if isinstance(exc, (ToolCallError, ToolLoopError)):
            exc.attempt_log = attempts.calls
            exc.tool_calls = tools.log if tools is not None else []
        raise
    except Exception as exc:
        raise attempts.failed_error(exc) from exc
    output = attempts.finish(output, budget_note)
    if memory is not None:
        from ray_orch.policy.recall import remember

        await predecessor_recorded()
        memory["remembered"] = await asyncio.to_thread(remember, task, agent, run.memory,
                                                       output, iteration=run.iteration)
        output.metadata["memory"] = memory
    return output


def _uses_memory(agent: Any, run: RunInputs) -> bool:
    """Whether the run or the agent has memory or knowledge (cheap: nothing imported)."""
    if run.memory is not None:
        return True
    return isinstance(agent, Agent) and bool(getattr(agent, "memory", None) or
                                             getattr(agent, "knowledge_paths", None))


async def _recall(task: Task, agent: Any, run: RunInputs,
                  parts: PromptParts) -> dict[str, Any] | None:
    """The retrieval step: memories and knowledge into the prompt, within what the
    context budget leaves (``policy/recall.py``); off the event loop (embedding, I/O)."""
    if not _uses_memory(agent, run):
        return None
    from ray_orch.policy.budget import budget_for
    from ray_orch.policy.recall import recall

    model = agent.llm_config.model if isinstance(agent, Agent) else None
    return await asyncio.to_thread(recall, task, agent, run.memory, parts,
                                   budget=budget_for(task, model))


def _with_memory_tools(task: Task, agent: Any, run: RunInputs,
                       tools: ToolRun | None) -> ToolRun | None:
    """``tools`` with the ``remember`` / ``recall`` tools added when asked for."""
    if not isinstance(agent, Agent) or not _uses_memory(agent, run):
        return tools
    from ray_orch.policy.recall import memory_tools
    from ray_orch.tools.journal import ToolJournal, visit_digest
    from ray_orch.tools.spec import tool_specs

    extra = memory_tools(agent, run.memory)
    if not extra:
        return tools
    specs = tool_specs(extra, who=f"task '{task.id}'")
    if tools is None:
        return ToolRun(task_id=task.id, specs=specs, journal=ToolJournal(
            task=task.id, visit=visit_digest(run.inputs, run.context, run.iteration)))
    tools.specs = [*tools.specs, *(s for s in specs if s.name not in tools.by_name)]
    return tools


def _decide(task: Task, text: str, output: TaskOutput, parts: PromptParts) -> None:
    condition = task.condition or {}
    route = match_route(text, condition)
    if route is not None:
        output.raw = route  # the chosen route, not the {"decision": ...} JSON it came in
    else:
        route = default_key(condition)
        if route is None:
            keys = ", ".join(repr(k) for k in route_keys(condition))
            parts.feedback = f"the answer {text.strip()!r} is not one of: {keys}"
            raise Rejected(f"answer {text.strip()[:200]!r} matches none of {keys}",
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
        cause = getattr(primary_error, "cause", None) or primary_error
        if task.fallback_agent is None or (
                isinstance(cause, GuardrailFailedError) and cause.original is not None):
            raise  # a guardrail that raised (or returned nonsense) fails on any agent
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
    from ray_orch.policy.breaker import breaker_guard
    from ray_orch.policy.fields import check_task_alone
    from ray_orch.policy.outcomes import outcome_of, peers_of, set_outcome

    check_task_alone(task)  # the same static checks a process makes, before any call

    context: dict[str, TaskOutput] = {}
    if task.context:
        # Outside a process, upstream tasks that already ran feed this one (the guide's
        # CheckpointedProcess runs task.execute() in order and sets task.result on resume).
        peers = peers_of(task)
        for ref in task.context:
            upstream = peers.get(ref) if isinstance(ref, str) else ref
            if upstream is None:
                continue
            result = outcome_of(upstream).result
            if result is not None:
                context[upstream.id] = result
    run = RunInputs(inputs=inputs, context=context)
    set_outcome(task, status="running", error=None)

    async def body() -> TaskOutput:
        from ray_orch.policy.caching import from_cache, key_for, local_cache, ttl_for

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
        error = TaskTimeoutError(f"task '{task.id}' exceeded its timeout of {task.timeout} s",
                                 task=task.id)
        set_outcome(task, status="failed", error=error)
        raise error from None
    except BaseException as exc:
        set_outcome(task, status="failed", error=exc)
        raise
    set_outcome(task, status="completed", result=output)
    return output
