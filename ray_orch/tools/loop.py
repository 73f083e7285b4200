"""The tool loop of one attempt: model turn, tool calls (concurrently), results back to
the model, until it gives a final answer.

A model turn that asks for a call of a ``requires_approval`` tool is journaled before the
person is asked, until they answer: a run interrupted meanwhile (Ctrl-C) and resumed takes
that turn from the journal and asks about the same call again, instead of asking the model
for a new turn.

Bounded by ``max_tool_calls`` (Task, else Agent; default 20): past it the attempt fails
with ``ToolLoopError`` naming the task and the tool called most. Tool failures go back
to the model as the tool's result, unless ``tool_errors="raise"`` (Task, else Agent),
when the attempt fails with ``ToolCallError`` and retries and fallbacks apply.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ray_orch.core.errors import LLMError, ToolCallError, ToolDefinitionError, ToolLoopError
from ray_orch.core.secrets import scrub_secrets
from ray_orch.tools.spec import ToolSpec, combined_tools, tool_specs

from .constrained import choice_schema, parse_choice, protocol_prompt, results_message
from .execute import ToolCall, execute_call, fail_call
from .journal import (
    ToolJournal,
    ToolJournalRef,
    args_digest,
    predecessor_recorded,
    visit_digest,
)
from .mcp_content import image_parts

__all__ = ["DEFAULT_MAX_TOOL_CALLS", "ToolRun", "answer_with_tools", "tool_run_for"]

DEFAULT_MAX_TOOL_CALLS = 20
_TOOL_ERRORS = ("return", "raise")


@dataclass(kw_only=True)
class ToolRun:
    """The tools of one task run with one agent (shared by its attempts)."""

    task_id: str
    """The task's name (for errors and the journal)."""
    specs: list[ToolSpec]
    """The tools offered: the agent's, then the task's."""
    journal: ToolJournal
    """Completed calls, reused by later attempts and resumed runs."""
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS
    """Tool calls one attempt may make."""
    raise_errors: bool = False
    """``tool_errors="raise"``: a failed call fails the attempt."""
    log: list[dict[str, Any]] = field(default_factory=list)
    """Every call made, all attempts (``TaskOutput.metadata["tool_calls"]``)."""
    approve: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
    """Asks a person about a call of a ``requires_approval`` tool: the answer as data
    (``approvals.answer_of``); None: no one can be asked (the call is refused)."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Known secret values (the agent's API key) scrubbed from tool errors, with the
    environment's (``core/secrets.py``), before the model, metadata or events see them."""

    @property
    def by_name(self) -> dict[str, ToolSpec]:
        """The tools by name."""
        return {spec.name: spec for spec in self.specs}


def _setting(task: Any, agent: Any, name: str, default: Any) -> Any:
    value = getattr(task, name, None)
    if value is None:
        value = getattr(agent, name, None)
    return default if value is None else value


def tool_run_for(task: Any, agent: Any, *, inputs: Any, context: dict[str, Any],
                 iteration: int | None, journal: Any = None) -> ToolRun | None:
    """The tool run of ``task`` with ``agent``, or None when neither has tools;
    ``journal`` is the run's ``ToolJournalRef`` (None: calls are not journaled).

    Raises:
        ToolDefinitionError: the tools are not valid (normally found at validation).
    """
    tools = combined_tools(agent, task)
    if not tools:
        return None
    who = f"task '{task.id}'"
    specs = _specs_of(tools, who)
    errors = _setting(task, agent, "tool_errors", "return")
    if errors not in _TOOL_ERRORS:
        raise ToolDefinitionError(f"{who}: tool_errors must be 'return' or 'raise', not "
                                  f"{errors!r}", task=task.id, field="tool_errors")
    calls = ToolJournal(task=task.id, visit=visit_digest(inputs, context, iteration),
                        ref=journal if isinstance(journal, ToolJournalRef) else None)
    return ToolRun(task_id=task.id, specs=specs, journal=calls,
                   max_tool_calls=int(_setting(task, agent, "max_tool_calls",
                                               DEFAULT_MAX_TOOL_CALLS)),
                   raise_errors=errors == "raise", secrets=_agent_secrets(agent))


def _agent_secrets(agent: Any) -> tuple[str, ...]:
    """The API key the agent's model was given, if any (a Mock agent has none)."""
    try:
        key = agent.llm_config.api_key
    except Exception:
        return ()
    return (key,) if isinstance(key, str) and key else ()


_specs: dict[tuple[int, ...], tuple[tuple[Any, ...], list[ToolSpec]]] = {}


def _specs_of(tools: list[Any], who: str) -> list[ToolSpec]:
    """The specs of a tools list, built once per process (schemas cost ~1 ms a tool)."""
    key = tuple(id(t) for t in tools)
    hit = _specs.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], tools, strict=True)):
        return hit[1]
    specs = tool_specs(tools, who=who, probe=True)
    if len(_specs) >= 256:
        _specs.clear()
    _specs[key] = (tuple(tools), specs)  # holds the tools: their ids stay theirs
    return specs


def _json_mode(config: Any) -> bool:
    from ray_orch.model.client import EMBEDDED

    return config.model == EMBEDDED or os.environ.get("RAY_ORCH_TOOL_MODE") == "json"


async def answer_with_tools(agent: Any, prompt: str,
                            schema: type[BaseModel] | dict[str, Any] | None,
                            calls: list[dict[str, Any]], run: ToolRun, *,
                            on_token: Callable[[str], None] | None = None
                            ) -> tuple[str, str | None]:
    """One attempt's answer, calling tools as the model asks.

    Args:
        agent: the ``Agent`` (its model and persona).
        prompt: the task's prompt.
        schema: the answer's schema, if any.
        calls: the attempt log of model calls (each turn is appended).
        run: the task run's tools, journal and limits.
        on_token: streams each model turn's answer, piece by piece.

    Returns:
        ``(final text, model)``.

    Raises:
        ToolLoopError: more than ``max_tool_calls`` calls.
        ToolCallError: a call failed and ``tool_errors="raise"``.
        LLMError: a model call failed.
    """
    from ray_orch.model.client import acomplete

    config = agent.llm_config
    json_mode = _json_mode(config)
    messages = agent.messages(prompt)
    offered: list[dict[str, Any]] | None = [spec.openai() for spec in run.specs]
    response_format: Any = schema
    if json_mode:
        messages[0] = {**messages[0],
                       "content": f"{messages[0]['content']}\n\n{protocol_prompt(run.specs)}"}
        offered, response_format = None, choice_schema(run.specs, schema)
    made: Counter[str] = Counter()
    identical: Counter[tuple[str, str]] = Counter()
    turn = 0
    while True:
        started = time.perf_counter()
        proposed = await _proposed_turn(run, messages)
        try:
            result = proposed or await acomplete(config, messages, schema=response_format,
                                                 tools=offered, on_token=on_token)
        except LLMError as exc:
            from ray_orch.model.client import error_kind

            calls.append({"model": config.model, "duration_s": time.perf_counter() - started,
                          "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                          "outcome": error_kind(exc)})
            raise
        agent.last_result = result
        if proposed is None:  # a journaled turn cost no model call now
            calls.append({"model": result.model, "duration_s": result.duration_s,
                          "prompt_tokens": result.prompt_tokens,
                          "completion_tokens": result.completion_tokens,
                          "cost_usd": result.cost_usd, "outcome": "success"})
        requested, text = (parse_choice(result.text, turn) if json_mode
                           else (result.tool_calls, result.text))
        if not requested:
            return text, result.model
        if json_mode and _repeats(requested, identical):
            # A small model asking again for a result it has: the next turn must answer.
            messages.append({"role": "assistant", "content": result.text})
            messages.append({"role": "user", "content": "You already have that tool result "
                             "above. Give the final_answer now."})
            response_format = choice_schema([], schema)
            continue
        turn += 1
        _count_calls(run, made, requested)
        asks = _asks_approval(run, requested)
        if asks:
            await _keep_turn(run, messages, result)
        done = await _turn(run, requested, identical)
        if asks:  # answered (approved, edited or refused): the model goes on from here
            await _keep_turn(run, messages, None)
        _append_results(messages, result, requested, done, json_mode)
        _append_images(messages, done, config)
        _raise_if_failed(run, done)


_TURN = "(model turn awaiting approval)"
"""The journal's tool name for a model turn whose calls wait for a person."""


def _asks_approval(run: ToolRun, requested: list[dict[str, Any]]) -> bool:
    """Whether a turn calls a ``requires_approval`` tool (its turn is journaled)."""
    specs = run.by_name
    return any(spec is not None and spec.options.requires_approval
               for spec in (specs.get(c["function"]["name"]) for c in requested))


async def _keep_turn(run: ToolRun, messages: list[dict[str, Any]], result: Any) -> None:
    """Journal the turn the model gave after ``messages`` while a person is asked about
    its calls (``result``), or, once they answered (None), that it is no longer waiting.
    Without a durable journal, a turn lives for the task run only."""
    turn = None if result is None else {"text": result.text, "model": result.model,
                                        "tool_calls": result.tool_calls}
    await run.journal.record(_TURN, {"messages": messages}, 0,
                             {"tool": _TURN, "turn": turn})


async def _proposed_turn(run: ToolRun, messages: list[dict[str, Any]]) -> Any:
    """The journaled turn still waiting for a person after ``messages`` (an interrupted
    run's), as an ``LLMResult``; None: ask the model."""
    from ray_orch.model.client import LLMResult

    if not any(spec.options.requires_approval for spec in run.specs):
        return None
    found = await run.journal.lookup(_TURN, {"messages": messages}, 0)
    turn = found.get("turn") if found else None
    if not turn:
        return None
    return LLMResult(text=turn["text"], model=turn["model"], tool_calls=turn["tool_calls"])


def _count_calls(run: ToolRun, made: Counter[str], requested: list[dict[str, Any]]) -> None:
    """Count a turn's requested calls into ``made``; past ``max_tool_calls``, stop."""
    made.update(c["function"]["name"] for c in requested)
    total = sum(made.values())
    if total > run.max_tool_calls:
        tool, count = made.most_common(1)[0]
        raise ToolLoopError(
            f"task '{run.task_id}': the model asked for {total} tool calls, past "
            f"max_tool_calls={run.max_tool_calls}; it called '{tool}' most ({count} "
            "times). Raise max_tool_calls, or make the tool's answer conclusive.",
            task=run.task_id, tool=tool, calls=total)


def _raise_if_failed(run: ToolRun, done: list[ToolCall]) -> None:
    """With ``tool_errors="raise"``, a failed call of the turn fails the attempt."""
    failed = next((c for c in done if not c.ok), None)
    if failed is not None and run.raise_errors:
        raise ToolCallError(f"task '{run.task_id}': tool '{failed.name}' failed with "
                            f"arguments {json.dumps(failed.arguments, default=str)}: "
                            f"{failed.error}", task=run.task_id, tool=failed.name,
                            arguments=failed.arguments)


async def _turn(run: ToolRun, requested: list[dict[str, Any]],
                identical: Counter[tuple[str, str]]) -> list[ToolCall]:
    """Run one turn's calls concurrently (journaled results are reused)."""
    specs = run.by_name
    jobs = []
    for request in requested:
        function = request["function"]
        name, raw = function["name"], function.get("arguments")
        jobs.append(_one(run, specs.get(name), name, raw, request.get("id", ""), identical))
    done = list(await asyncio.gather(*jobs))
    for call in done:
        if not call.ok:  # an exception's text may carry a secret the tool had
            call.error = scrub_secrets(call.error, run.secrets)
            call.result = scrub_secrets(call.result, run.secrets)
    run.log.extend(call.as_dict() for call in done)
    return done


async def _one(run: ToolRun, spec: ToolSpec | None, name: str, raw: Any, call_id: str,
               identical: Counter[tuple[str, str]]) -> ToolCall:
    # A task handed off behind another acts only once that one's record is durable.
    await predecessor_recorded()
    arguments = _arguments_of(raw)
    replay = spec is not None and spec.options.replay and arguments is not None
    nth = 0
    same = arguments
    if replay:
        assert arguments is not None and spec is not None
        same = same_call_arguments(spec, arguments)
        key = (name, args_digest(same))
        nth = identical[key]
        identical[key] += 1  # counted before any await: the order is the model's
        found = await run.journal.lookup(name, same, nth)
        if found is not None and spec is not None:
            return ToolCall(name=name, arguments=arguments, ok=True, result=found["result"],
                            where=found.get("where", spec.where), node=found.get("node"),
                            pid=found.get("pid"), replayed=True, started=time.time(),
                            call_id=call_id)
    if spec is not None and spec.options.requires_approval and arguments is not None:
        refused, raw = await _approved(run, name, arguments)
        if refused is not None:  # the model hears why, as the call's result
            return fail_call(ToolCall(name=name, arguments=arguments, where=spec.where,
                                      started=time.time(), call_id=call_id), refused,
                             "ApprovalRefused")

    async def call_and_journal() -> ToolCall:
        call = await execute_call(spec, name, raw, call_id=call_id,
                                  available=[s.name for s in run.specs])
        if replay and call.ok:
            assert same is not None
            await run.journal.record(name, same, nth, {
                "tool": name, "arguments": arguments, "result": call.result,
                "where": call.where, "node": call.node, "pid": call.pid,
                "duration_s": call.duration_s})
        return call

    # Shielded: when the attempt is cancelled (Ctrl-C, a cancelled run) while the tool
    # runs, the call still ends and its result is journaled, so a resumed run reuses it
    # instead of doing its side effect again.
    running = asyncio.ensure_future(call_and_journal())
    _in_flight.add(running)
    running.add_done_callback(_in_flight.discard)
    return await asyncio.shield(running)


_in_flight: set[asyncio.Future[ToolCall]] = set()
"""Tool calls still running after their attempt was cancelled (kept referenced)."""


def same_call_arguments(spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments that say which call this is, for the journal: after the tool's own
    schema checked and coerced them (``10``, ``10.0`` and ``"10"`` for an ``int`` are one
    call; a default left out and given are one call). Arguments the schema refuses, and
    MCP tools' (their server checks them), count as sent.

    Example:
        >>> from ray_orch.tools.spec import tool_specs
        >>> def charge(amount: int, currency: str = "EUR") -> str: ...
        >>> [spec] = tool_specs([charge], who="agent")
        >>> same_call_arguments(spec, {"amount": "10"})
        {'amount': 10, 'currency': 'EUR'}
        >>> same_call_arguments(spec, {"amount": 10.0, "currency": "EUR"})
        {'amount': 10, 'currency': 'EUR'}
    """
    model = spec.arguments_model()
    if model is None:
        return arguments
    try:
        return model.model_validate(arguments).model_dump(mode="json")  # type: ignore[no-any-return]
    except ValidationError:
        return arguments


async def _approved(run: ToolRun, name: str, arguments: dict[str, Any]
                    ) -> tuple[str | None, Any]:
    """Ask about a call: ``(None, arguments to call with)``, or ``(why refused, None)``;
    a refusal goes back to the model as the tool's result."""
    if run.approve is None:
        return (f"tool '{name}' needs a person's approval and this run has no one to ask "
                "(give Process(approval_handler=...))", None)
    answer = await run.approve(name, arguments)
    kind = answer.get("answer")
    if kind == "approve":
        return None, arguments
    if kind == "edit" and isinstance(answer.get("value"), dict):
        return None, answer["value"]
    if kind == "edit":
        return f"the reviewer's edit of '{name}' is not a dict of arguments", None
    return f"rejected by a reviewer: {answer.get('reason') or 'no reason given'}", None


def _repeats(requested: list[dict[str, Any]], identical: Counter[tuple[str, str]]) -> bool:
    """Whether every requested call was made before, with the same arguments."""
    for request in requested:
        arguments = _arguments_of(request["function"].get("arguments"))
        if arguments is None or not identical[(request["function"]["name"],
                                               args_digest(arguments))]:
            return False
    return True


def _arguments_of(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _append_images(messages: list[dict[str, Any]], done: list[ToolCall], config: Any) -> None:
    """Images the tools returned, as a user message of image parts, for models that take
    them (the tool messages hold short placeholders either way)."""
    from ray_orch.model.client import takes_images

    shown = [c for c in done if c.extra.get("images")]
    if not shown:
        return
    if not takes_images(config):
        for call in shown:
            call.result += "\n(the image is not shown: this model does not take images)"
            _replace_result(messages, call)
        return
    for call in shown:
        messages.append({"role": "user", "content": image_parts(call.name,
                                                                call.extra["images"])})


def _replace_result(messages: list[dict[str, Any]], call: ToolCall) -> None:
    for message in reversed(messages):
        if message.get("role") == "tool" and message.get("tool_call_id") == call.call_id:
            message["content"] = call.result
            return


def _append_results(messages: list[dict[str, Any]], result: Any,
                    requested: list[dict[str, Any]], done: list[ToolCall],
                    json_mode: bool) -> None:
    if json_mode:
        messages.append({"role": "assistant", "content": result.text})
        messages.append(results_message([(c.name, json.dumps(c.arguments, default=str),
                                          c.result) for c in done]))
        return
    messages.append({"role": "assistant", "content": result.text or None,
                     "tool_calls": requested})
    for request, call in zip(requested, done, strict=True):
        messages.append({"role": "tool", "tool_call_id": request.get("id", ""),
                         "name": call.name, "content": call.result})
