"""PraisonAI's keywords: which ray-orch honours, and which it accepts with a warning.

A PraisonAI script moves to ray-orch by changing its import line. Its ``Agent``, ``Task``
and ``AgentTeam`` calls may use any keyword PraisonAI (praisonaiagents 1.7.x) accepts.
Each one is either honoured (``Task`` / ``Agent`` / ``AgentTeam`` store and use it), or
listed here with PraisonAI's default: a different value is accepted with a one-time
``PraisonCompatWarning`` saying it has no effect in ray-orch. Nothing is dropped silently,
and a keyword neither side knows is an ``InvalidTaskFieldError``.

``docs/PRAISONAI.md`` has the full table.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from ray_orch.core.errors import InvalidTaskFieldError

__all__ = [
    "AGENT_NO_EFFECT",
    "TASK_NO_EFFECT",
    "TEAM_NO_EFFECT",
    "MultiAgentHooksConfig",
    "PraisonCompatWarning",
    "no_effect",
    "reflection_rounds",
    "team_hooks",
]


class PraisonCompatWarning(UserWarning):
    """A PraisonAI keyword was given a value that has no effect in ray-orch."""


# Keyword -> PraisonAI's default. Giving the default is silent (it asks for nothing).
TASK_NO_EFFECT: dict[str, Any] = {
    "config": None, "status": "not started", "result": None, "images": None,
"human_review_prompt": None, "loop_state": None, "memory": None,
    "quality_check": True, "rerun": False, "retain_full_context": False, "retry_count": 0,
    "agent_config": None, "skip_on_failure": False, "on_error": "stop",
    "action": None, "handler": None, "should_run": None, "loop_over": None,
    "loop_var": "item", "execution": None, "routing": None, "output_config": None,
    "output": None, "when": None, "then_task": None, "else_task": None, "autonomy": None,
    "knowledge": None, "web": None, "reflection": None, "planning": None, "hooks": None,
    "caching": None, "output_variable": None, "fail_on_memory_error": False,
}

AGENT_NO_EFFECT: dict[str, Any] = {
    "auth": None, "toolsets": None, "memory": None, "knowledge": None,
    "planning": False, "rules": None, "web": None, "context": None,
    "autonomy": None, "output": None, "execution": None, "templates": None,
    "caching": None, "hooks": None, "skills": None, "self_improve": False,
    "approval": None, "tool_config": None, "learn": None, "backend": None, "run_on": None,
    "tools_run_on": None, "runtime": None, "interrupt_controller": None,
    "tool_search": False, "message_steering": False, "sandbox": None, "retry": None,
    # PraisonAI's deprecated (legacy) keywords, still accepted there.
    "allow_delegation": False, "allow_code_execution": False,
    "code_execution_mode": "safe", "auto_save": None, "rate_limiter": None,
    "verification_hooks": None, "cli_backend": None, "retrieval_config": None,
    "fallback_models": None, "thinking_budget": None,
}

TEAM_NO_EFFECT: dict[str, Any] = {
    "memory": False, "planning": False, "context": False, "autonomy": None, "knowledge": None,
    "web": None, "reflection": None, "learn": None,
    "tools_run_on": None, "run_on": None,
}

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _is_default(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or value == default)
    except Exception:  # an object whose == raises is not the default
        return False


def no_effect(owner: str, table: dict[str, Any], given: dict[str, Any], *,
              known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Take PraisonAI's no-effect keywords out of ``given``, warning once per keyword.

    Args:
        owner: ``"Task"``, ``"Agent"`` or ``"AgentTeam"`` (names the warning / error).
        table: the owner's no-effect keywords with PraisonAI's defaults.
        given: the keywords to sort (not changed).
        known: further keywords the caller handles itself; they are returned.

    Returns:
        The keywords of ``given`` that are neither in ``table`` nor unknown: ``known``'s.

    Raises:
        InvalidTaskFieldError: a keyword neither PraisonAI nor ray-orch accepts.

    Example:
        >>> no_effect("Task", TASK_NO_EFFECT, {"rerun": False})
        {}
    """
    rest: dict[str, Any] = {}
    for key, value in given.items():
        if key in table:
            if not _is_default(value, table[key]):
                _warn_once(owner, key)
            continue
        if known is not None and key in known:
            rest[key] = value
            continue
        raise InvalidTaskFieldError(
            f"{owner}() got an unexpected keyword argument '{key}' (neither ray-orch nor "
            "PraisonAI accepts it)", field=key)
    return rest


def _warn_once(owner: str, key: str) -> None:
    with _warned_lock:
        if (owner, key) in _warned:
            return
        _warned.add((owner, key))
    warnings.warn(f"{owner}({key}=...) is PraisonAI's keyword and has no effect in ray-orch "
                  "(see docs/PRAISONAI.md)", PraisonCompatWarning, stacklevel=4)


def reflection_rounds(reflection: Any) -> tuple[int, int] | None:
    """``(min, max)`` self-reflection rounds for an Agent's ``reflection=``, or None.

    Accepts PraisonAI's forms: ``True`` (1 to 3 rounds), a dict or object with
    ``min_iterations`` / ``max_iterations``.

    Raises:
        InvalidTaskFieldError: bounds that are not ``1 <= min <= max``.

    Example:
        >>> reflection_rounds(True), reflection_rounds({"max_iterations": 2})
        ((1, 3), (1, 2))
    """
    if reflection is None or reflection is False:
        return None
    if reflection is True or isinstance(reflection, str):
        return (1, 3)
    get = reflection.get if isinstance(reflection, dict) else \
        (lambda name, default: getattr(reflection, name, default))
    low, high = get("min_iterations", 1), get("max_iterations", 3)
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise InvalidTaskFieldError(
            f"reflection needs 1 <= min_iterations <= max_iterations, got {low}, {high}",
            field="reflection")
    return (low, high)


def task_extras(task: Any, *, callback: Any, on_task_complete: Any, depends_on: Any) -> None:
    """Check a Task's PraisonAI keywords and apply its aliases (called by ``Task.__init__``,
    after it stored them); a single guardrail function becomes a list of one.

    Raises:
        InvalidTaskFieldError: both ``callback`` and ``on_task_complete``; a callback that
            is not callable; ``depends_on`` beside ``context``.
    """
    if callback is not None and on_task_complete is not None:
        raise InvalidTaskFieldError(
            f"task '{task.id}': give callback or on_task_complete, not both",
            task=task.id, field="callback")
    if task.callback is not None and not callable(task.callback):
        raise InvalidTaskFieldError(f"task '{task.id}': callback must be callable, not "
                                    f"{type(task.callback).__name__}", task=task.id,
                                    field="callback")
    if callable(task.guardrails):
        # PraisonAI's guardrails=fn. (A bare string stays a mistake validation names: is
        # it one rule or a typo'd list? A rule goes in guardrail= or a list.)
        task.guardrails = [task.guardrails]
    if depends_on is not None:
        if task.context is not None:
            raise InvalidTaskFieldError(
                f"task '{task.id}': depends_on is an alias of context; give one of them",
                task=task.id, field="depends_on")
        task.context = list(depends_on)
    if task.input_file is not None and task.loop_data is None and \
            os.path.exists(task.input_file):
        use_input_file(task, task.input_file)


def use_input_file(task: Any, path: str) -> None:
    """Make ``path`` a loop task's items; like PraisonAI, each iteration's prompt is the
    description followed by its item (unless the description places ``{item}`` itself).

    Raises:
        LoopDataError: the file cannot be read.
    """
    from ray_orch.core.prompt import placeholders

    task.loop_data = loop_items(path, task=task.id)
    if task.task_type == "loop" and not placeholders(task.description):
        task.description = f"{task.description}\n{{item}}" if task.description else "{item}"


def loop_items(path: str, *, task: str | None = None) -> list[str]:
    """A loop's items from ``input_file``, as PraisonAI reads them: for a ``.csv`` one item
    a non-empty row (``"Question: q\\nAnswer: a"`` for a row of several columns), for
    any other file one item a non-empty line.

    Raises:
        LoopDataError: the file cannot be read.
    """
    import csv

    from ray_orch.core.errors import LoopDataError

    try:
        with open(path, encoding="utf-8") as handle:
            if not path.lower().endswith(".csv"):
                return [line.strip() for line in handle if line.strip()]
            items = []
            for row in csv.reader(handle, quotechar='"', escapechar="\\"):
                if len(row) > 1:
                    items.append(f"Question: {row[0].strip()}\nAnswer: "
                                 + ",".join(cell.strip() for cell in row[1:]))
                elif row and row[0].strip():
                    items.append(row[0].strip())
            return items
    except OSError as exc:
        raise LoopDataError(f"task '{task}': cannot read input_file '{path}': {exc.strerror}",
                            task=task, field="input_file") from None


REFLECT_PROMPT = ("Reflect on your answer below to the request above. Is it correct, "
                  "complete and what was asked for? Answer with JSON "
                  '{"reflection": "...", "satisfactory": "yes" | "no"}.')
IMPROVE_PROMPT = ("Now give your improved final answer to the original request, "
                  "using this reflection. Answer with the final answer only.")


async def reflect(agent: Any, prompt: str, first: Any, rounds: tuple[int, int]) -> Any:
    """PraisonAI's self-reflection: the agent judges its answer and, until satisfied (and
    at least ``rounds[0]`` times, at most ``rounds[1]``), answers again.

    Args:
        agent: the ``Agent`` (its model and persona are used).
        prompt: the original request.
        first: the first ``LLMResult``.
        rounds: ``(min, max)`` reflections.

    Returns:
        The last answer's ``LLMResult``, its tokens and cost the sum of every call.
    """
    import dataclasses

    from pydantic import BaseModel

    from ray_orch.model.client import acomplete

    class Reflection(BaseModel):
        reflection: str
        satisfactory: str

    low, high = rounds
    answer, calls = first, [first]
    for done in range(1, high + 1):
        messages = [*agent.messages(prompt),
                    {"role": "assistant", "content": answer.text},
                    {"role": "user", "content": REFLECT_PROMPT}]
        judged = await acomplete(agent.llm_config, messages, schema=Reflection)
        calls.append(judged)
        verdict = _satisfied(judged.text)
        if verdict and done >= low:
            break
        messages += [{"role": "assistant", "content": judged.text},
                     {"role": "user", "content": IMPROVE_PROMPT}]
        answer = await acomplete(agent.llm_config, messages)
        calls.append(answer)
    return dataclasses.replace(
        answer, prompt_tokens=sum(c.prompt_tokens for c in calls),
        completion_tokens=sum(c.completion_tokens for c in calls),
        cost_usd=sum(c.cost_usd for c in calls), duration_s=sum(c.duration_s for c in calls))


def _satisfied(text: str) -> bool:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return "yes" in text.lower()
    value = data.get("satisfactory", "") if isinstance(data, dict) else data
    return str(value).strip().lower() in ("yes", "true", "y")


def agent_extras(agent: Any, *, model: Any, reflection: Any,
                 options: dict[str, Any]) -> dict[str, Any]:
    """Store and check an Agent's PraisonAI keywords (called by ``Agent.__init__``).

    Returns:
        ``options`` without PraisonAI's no-effect keywords (the rest are litellm options).

    Raises:
        InvalidTaskFieldError: both ``llm`` and ``model``; bad reflection bounds.
    """
    if model is not None:
        if agent.llm is not None:
            raise InvalidTaskFieldError(
                f"Agent '{agent.role}': give llm or model (its alias), not both",
                field="model")
        agent.llm = model
    agent.reflection = reflection
    agent.reflection_rounds = reflection_rounds(reflection)
    agent.chat_history = []
    options = dict(options)
    guards = [options.pop(k) for k in ("guardrails", "guardrail") if k in options]
    options.pop("max_guardrail_retries", None)  # the retries are the task's validation_steps
    from ray_orch.policy.agent_chat import agent_guardrails

    agent.guardrails = [g for value in guards
                        for g in agent_guardrails(value, who=f"agent '{agent.role}'")]
    from ray_orch.policy.handoffs import DEFAULT_MAX_HANDOFFS, handoff_tools

    agent.handoffs = options.pop("handoffs", None)
    agent.max_handoffs = options.pop("max_handoffs", DEFAULT_MAX_HANDOFFS)
    agent.tools = [*agent.tools, *handoff_tools(agent.handoffs, who=f"agent '{agent.role}'",
                                                limit=agent.max_handoffs)]
    table = {k: v for k, v in AGENT_NO_EFFECT.items() if k in options}
    no_effect("Agent", table, {k: options[k] for k in table})
    return {k: v for k, v in options.items() if k not in table}


# -- team hooks --------------------------------------------------------------------------

log = logging.getLogger("ray_orch.team")


@dataclass(kw_only=True)
class MultiAgentHooksConfig:
    """PraisonAI's team hooks (``AgentTeam(hooks=MultiAgentHooksConfig(...))``).

    Example:
        >>> hooks = MultiAgentHooksConfig(on_task_start=lambda task, task_id: None)
        >>> hooks.on_task_complete is None
        True
    """

    on_task_start: Any = None
    """``fn(task, task_id)``, called on the driver as each task becomes ready to run
    (``task_id`` is PraisonAI's: the task's position, or its key in a ``tasks={}``)."""
    on_task_complete: Any = None
    """``fn(task, output)``, called on the driver with each completed task's output,
    before the task's own callback; its exception is logged, not raised (as PraisonAI's)."""
    completion_checker: Any = None
    """``fn(task, raw) -> bool``: False sends the answer back (a failed guardrail: the
    task answers again, within its ``validation_steps``)."""

    def to_dict(self) -> dict[str, Any]:
        """PraisonAI's description of the hooks (their reprs)."""
        return {name: None if fn is None else str(fn) for name, fn in vars(self).items()}


def team_hooks(hooks: Any) -> _TeamHooks:
    """A team's hooks from PraisonAI's ``hooks=`` (a ``MultiAgentHooksConfig``, an object
    with its attributes, a dict of them, or None).

    Raises:
        InvalidTaskFieldError: a hook that is not callable.
    """
    get = hooks.get if isinstance(hooks, dict) else (lambda name: getattr(hooks, name, None))
    found = {name: get(name) for name in ("on_task_start", "on_task_complete",
                                          "completion_checker")} if hooks else {}
    for name, fn in found.items():
        if fn is not None and not callable(fn):
            raise InvalidTaskFieldError(f"AgentTeam hooks: {name} must be callable, not "
                                        f"{type(fn).__name__}", field="hooks")
    return _TeamHooks(**found)


@dataclass(kw_only=True)
class _TeamHooks:
    on_task_start: Any = None
    on_task_complete: Any = None
    completion_checker: Any = None

    def started(self, task: Any, task_id: Any) -> None:
        """Call ``on_task_start``; its exception is logged (PraisonAI's behaviour)."""
        if self.on_task_start is None:
            return
        try:
            self.on_task_start(task, task_id)
        except Exception as exc:
            log.error("Error in on_task_start callback: %s", exc)

    def apply(self, task: Any, task_id: Any) -> Any:
        """Hook ``task`` for one run; returns the undo."""
        before = (task.callback, list(task.guardrails))
        if self.on_task_complete is not None:
            task.callback = _Completed(hook=self.on_task_complete, task=task,
                                       own=task.callback)
        if self.completion_checker is not None:
            task.guardrails = [*task.guardrails, _Checker(check=self.completion_checker,
                                                          task_name=task.id)]

        def undo() -> None:
            task.callback, task.guardrails = before
        return undo


@dataclass(kw_only=True)
class _Completed:
    """A task's callback with the team's ``on_task_complete`` called first."""

    hook: Any
    task: Any
    own: Any

    def __call__(self, output: Any) -> Any:
        try:
            result = self.hook(self.task, output)
        except Exception as exc:
            log.error("Error in on_task_complete callback: %s", exc)
            result = None
        if inspect.isawaitable(result):
            return self._then(result, output)
        return self.own(output) if self.own is not None else None

    async def _then(self, pending: Any, output: Any) -> Any:
        try:
            await pending
        except Exception as exc:
            log.error("Error in on_task_complete callback: %s", exc)
        result = self.own(output) if self.own is not None else None
        return await result if inspect.isawaitable(result) else result


@dataclass(kw_only=True)
class _Checker:
    """A team's ``completion_checker`` as a guardrail."""

    check: Any
    task_name: str

    @property
    def __name__(self) -> str:
        return "completion_checker"

    def __call__(self, output: Any) -> tuple[bool, Any]:
        from types import SimpleNamespace

        ok = bool(self.check(SimpleNamespace(name=self.task_name), output.raw))
        return (True, output) if ok else (False, "the team's completion_checker rejected it")


# -- PraisonAI's private guardrail hook --------------------------------------------------

def guardrail_fn(task: Any) -> Any:
    """PraisonAI's ``Task._guardrail_fn``: the task's first guardrail, or None."""
    return task.guardrails[0] if task.guardrails else None
