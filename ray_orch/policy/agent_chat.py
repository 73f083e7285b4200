"""Talking to one agent outside a workflow: PraisonAI's ``chat`` / ``start`` / ``run``.

A turn runs in this process (no Ray) with what a task's attempt has: the agent's tools
(and the turn's own) through the tool loop, structured output checked against a schema,
the agent's guardrails (a rejected answer is asked again, with why), reflection. The agent keeps
the conversation: each turn's prompt and answer are appended to ``agent.chat_history``,
and the next turn's model calls see them between the system message and the new prompt
(``history_for``, read by ``Agent.messages``). ``agent.clear_history()`` forgets them.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.core.output import TaskOutput

__all__ = ["CHAT_NO_EFFECT", "agent_guardrails", "converse", "history_for",
           "judge_now"]

# PraisonAI's chat() keywords that change nothing here, with its defaults.
CHAT_NO_EFFECT: dict[str, Any] = {
    "temperature": 1.0, "reasoning_steps": False, "stream": None, "task_name": None,
    "task_description": None, "task_id": None, "config": None, "force_retrieval": False,
    "skip_retrieval": False, "attachments": None, "tool_choice": None, "seed": None,
    "cancel_token": None,
}

# PraisonAI's guardrail presets, as rules the agent's model judges.
_PRESETS = {
    "permissive": None,
    "safety": "The output contains nothing harmful, unsafe, hateful or illegal.",
    "strict": "The output contains nothing harmful, unsafe, hateful or illegal, and it is "
              "accurate, professional and on topic.",
}

_history: contextvars.ContextVar[tuple[int, list[dict[str, Any]]] | None] = \
    contextvars.ContextVar("ray_orch_chat_history", default=None)


def history_for(agent: Any) -> list[dict[str, Any]]:
    """The earlier turns of the conversation ``agent`` is in now (none outside a turn,
    e.g. in a workflow's tasks)."""
    held = _history.get()
    return list(held[1]) if held is not None and held[0] == id(agent) else []


def agent_guardrails(value: Any, *, who: str) -> list[Any]:
    """An Agent's ``guardrails=`` (or legacy ``guardrail=``) as guardrails: a callable, a
    rule string (PraisonAI's presets ``"permissive"``, ``"safety"``, ``"strict"`` become
    rules), a list of them, or a config object with a ``validator`` / ``description``.

    Raises:
        InvalidTaskFieldError: anything else.

    Example:
        >>> agent_guardrails("permissive", who="agent 'a'")
        []
    """
    if value is None or value is False:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    found: list[Any] = []
    for item in items:
        if isinstance(item, str):
            rule = _PRESETS.get(item.strip().lower(), item)
            found += [rule] if rule else []
        elif callable(item):
            found.append(item)
        elif getattr(item, "validator", None) is not None or \
                getattr(item, "description", None) is not None:
            found += agent_guardrails(getattr(item, "validator", None)
                                      or getattr(item, "description", None), who=who)
        else:
            raise InvalidTaskFieldError(f"{who}: guardrails must be a callable, a rule string "
                                        f"or a list of them, not {item!r}", field="guardrails")
    return found


async def converse(agent: Any, prompt: str, *, schema: Any = None,
                   tools: list[Any] | None = None, tries: int = 3) -> TaskOutput:
    """One turn of a conversation with ``agent``.

    Args:
        agent: the ``Agent`` (its tools, guardrails and history are used).
        prompt: the user's message.
        schema: a pydantic model the answer must follow (PraisonAI's ``output_json`` /
            ``output_pydantic``).
        tools: tools for this turn only, beside the agent's own.
        tries: answers the model may give before a rejected one fails the turn
            (PraisonAI's ``max_guardrail_retries`` is 3).

    Returns:
        The answer (``raw``; ``pydantic`` / ``json_dict`` with a schema).

    Raises:
        OutputValidationError: no answer followed the schema.
        GuardrailFailedError: no answer passed the agent's guardrails.
        ToolLoopError, ToolCallError, LLMError: the tools or the model failed.
    """
    from ray_orch.policy.guardrails import Rejected

    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidTaskFieldError(f"agent '{agent.name}': chat needs a non-empty prompt",
                                    field="prompt")
    name = f"chat:{agent.name}"
    run = _tool_run(agent, name, tools)
    token = _history.set((id(agent), list(agent.chat_history)))
    try:
        feedback: str | None = None
        for attempt in range(1, tries + 1):
            asked = prompt if feedback is None else (
                f"{prompt}\n\nYour previous answer was rejected: {feedback}\n"
                "Fix this in your new answer.")
            text = await _answer(agent, asked, schema, run)
            try:
                output = await _checked(agent, name, prompt, text, schema)
                break
            except Rejected as exc:
                feedback = str(exc)
                if attempt == tries:
                    raise _rejected(exc, name, tries) from None
    finally:
        _history.reset(token)
    if run is not None and run.log:
        output.metadata["tool_calls"] = list(run.log)
    agent.chat_history += [{"role": "user", "content": prompt},
                           {"role": "assistant", "content": output.raw}]
    return output


def _tool_run(agent: Any, name: str, tools: list[Any] | None) -> Any:
    """The turn's tools (the agent's, then its own), or None without any."""
    from ray_orch.tools.journal import ToolJournal, visit_digest
    from ray_orch.tools.loop import DEFAULT_MAX_TOOL_CALLS, ToolRun
    from ray_orch.tools.spec import tool_specs

    offered = [*agent.tools, *(tools or [])]
    if not offered:
        return None
    return ToolRun(task_id=name, specs=tool_specs(offered, who=f"agent '{agent.role}'"),
                   journal=ToolJournal(task=name, visit=visit_digest(None, {}, None)),
                   max_tool_calls=agent.max_tool_calls or DEFAULT_MAX_TOOL_CALLS,
                   raise_errors=agent.tool_errors == "raise")


async def _answer(agent: Any, prompt: str, schema: Any, run: Any) -> str:
    if run is None:
        return str((await agent.acomplete(prompt, output_schema=schema)).text)
    from ray_orch.policy.handoffs import conversation
    from ray_orch.tools.loop import answer_with_tools

    with conversation():  # the turn's hand-offs count against max_handoffs together
        text, _ = await answer_with_tools(agent, prompt, schema, [], run)
    return text


async def _checked(agent: Any, name: str, prompt: str, text: str, schema: Any) -> TaskOutput:
    """The answer as an output, once it followed the schema and passed the guardrails.

    Raises:
        Rejected: it did not (why is the next answer's feedback).
    """
    from types import SimpleNamespace

    from ray_orch.policy.guardrails import Rejected, check_guardrails, parse_structured

    if not text.strip():
        raise Rejected("the answer was empty", kind="invalid_output")
    output = TaskOutput(raw=text, description=prompt, agent=agent.role)
    if schema is not None:
        try:
            parsed = parse_structured(text, schema)
        except ValueError as exc:
            raise Rejected(f"the answer did not match the required JSON schema ({exc})",
                           kind="invalid_output") from None
        output.pydantic = parsed
        output.json_dict = parsed.model_dump(mode="json")
    return await check_guardrails(SimpleNamespace(id=name, guardrails=[]),  # type: ignore[arg-type]
                                  agent, output, [])


def _rejected(exc: Any, name: str, tries: int) -> Exception:
    from ray_orch.core.errors import GuardrailFailedError, OutputValidationError

    cls = OutputValidationError if exc.kind == "invalid_output" else GuardrailFailedError
    return cls(f"{name}: {exc} (after {tries} answers)", task=name)


def judge_now(task: Any, output: TaskOutput) -> Any:
    """PraisonAI's ``Task._process_guardrail(output)``: the task's guardrails (and its
    agent's) judged on ``output`` here, at once, as a ``GuardrailResult`` (rule strings
    are judged by the agent's model).

    Example:
        >>> from ray_orch import Task, TaskOutput
        >>> task = Task(description="d", guardrail=lambda o: (len(o.raw) > 3, "too short"))
        >>> task._process_guardrail(TaskOutput(raw="hi")).error
        'too short'
    """
    from ray_orch.core.output import GuardrailResult
    from ray_orch.core.sync import run_sync
    from ray_orch.policy.guardrails import Rejected, check_guardrails

    try:
        checked = run_sync(check_guardrails(task, task.agent, output, []))
    except Rejected as exc:
        _, _, reason = str(exc).partition(": ")
        return GuardrailResult(success=False, error=reason or str(exc))
    return GuardrailResult(success=True, result=checked)
