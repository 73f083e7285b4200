"""Static checks of every definition field, before Ray starts or any model call.

``Task``, ``Agent`` and ``Process`` take their first argument positionally and every other
one by keyword; a keyword none of them knows is an ``UnknownKeywordError`` naming it and
the closest known one. The known keywords are module-level sets, so a feature adds its
keyword in one place:

- ``TASK_KEYWORDS`` / ``AGENT_KEYWORDS`` / ``PROCESS_KEYWORDS``: keywords of the
  constructors that are not named parameters (stored as attributes, default None);
- ``NO_EFFECT_KEYWORDS``: accepted for compatibility, with a one-time ``RayOrchWarning``;
- ``PROVIDER_OPTIONS``: litellm / OpenAI request parameters an ``Agent`` passes to its
  model (anything provider-specific goes in ``extra_body={...}``).

Field checks (``task_problems``, ``check_agent``, ``check_process``) reject wrong types,
out-of-range numbers, nan and inf, bools where numbers are expected, and malformed
conditions; each error is an ``InvalidTaskFieldError`` naming the task (or agent) and
the field.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ray_orch.core.errors import (
    InvalidTaskFieldError,
    RayOrchWarning,
    UnknownKeywordError,
    WorkflowDefinitionError,
)
from ray_orch.core.routing import route_keys

__all__ = ["AGENT_KEYWORDS", "NO_EFFECT_KEYWORDS", "PROCESS_KEYWORDS", "PROVIDER_OPTIONS",
           "TASK_KEYWORDS", "accept_keywords", "check_agent", "check_process",
           "no_positional", "task_problems"]

# Keywords beyond each constructor's named parameters: stored on the object as given
# (the tools feature reads them). Add a keyword here to accept it.
TASK_KEYWORDS: set[str] = set()
AGENT_KEYWORDS: set[str] = set()
PROCESS_KEYWORDS: set[str] = set()

# Keywords accepted only for compatibility with other frameworks' scripts: they have no
# effect here, and say so once per process (a RayOrchWarning).
NO_EFFECT_KEYWORDS: dict[str, set[str]] = {"Task": set(), "Agent": set(), "Process": set()}

# litellm / OpenAI chat-completion parameters an Agent forwards to its model.
PROVIDER_OPTIONS: frozenset[str] = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "response_format", "n", "user", "parallel_tool_calls", "tool_choice", "reasoning_effort",
    "modalities", "audio", "prediction", "service_tier", "store", "metadata",
    "stream_options", "extra_headers", "extra_body", "api_version", "num_retries",
    "custom_llm_provider", "drop_params", "top_k", "repetition_penalty", "min_p",
    "thinking", "web_search_options", "deployment_id", "organization", "api_base",
    "stream", "mock_response",
    # ray-orch's own (ray_orch.model.ratelimit.LIMIT_KEYS): cluster-wide rate limits, and
    # whether the model takes images (tool results' images are attached for it)
    "rpm", "tpm", "max_in_flight", "supports_vision",
})
# Keys of an ``llm={...}`` dict besides the provider options.
_LLM_DICT_KEYS = frozenset({"model", "base_url", "api_base", "api_key", "timeout", "client"})
_NUMERIC_OPTIONS = {"temperature": 0.0, "top_p": 0.0, "presence_penalty": None,
                    "frequency_penalty": None, "min_p": 0.0, "repetition_penalty": 0.0}
_INTEGER_OPTIONS = {"max_tokens": 1, "max_completion_tokens": 1, "n": 1, "seed": None,
                    "top_k": 1, "top_logprobs": 0, "num_retries": 0}

_warned: set[tuple[str, str]] = set()


def _where(kind: str, owner: str | None) -> str:
    return f"{kind} '{owner}'" if owner else kind


def no_positional(kind: str, extra: tuple[Any, ...], *, owner: str | None = None,
                  first: str, label: str | None = None) -> None:
    """Refuse positional arguments after the first (they are keyword-only).

    Raises:
        InvalidTaskFieldError: ``extra`` is not empty.
    """
    if extra:
        raise InvalidTaskFieldError(
            f"{label or _where(kind, owner)}: only {first} may be given by position; pass the other "
            f"{len(extra)} argument(s) by keyword (e.g. {kind}({first}=..., agent=...))",
            task=owner, field=first)


def accept_keywords(kind: str, given: Mapping[str, Any], *, known: Iterable[str],
                    owner: str | None = None, extra: Iterable[str] = (),
                    label: str | None = None) -> dict[str, Any]:
    """Check keywords beyond a constructor's named parameters.

    Args:
        kind: ``"Task"``, ``"Agent"`` or ``"Process"``.
        given: the keywords that matched no named parameter.
        known: every keyword the constructor accepts (for the suggestion).
        owner: the task or agent name (``task`` of the error for a Task).
        extra: further keywords accepted here (e.g. provider options on Agent).
        label: how the message names the object (default: from ``kind`` and ``owner``).

    Returns:
        The accepted keywords (no-effect ones included, after their warning).

    Raises:
        UnknownKeywordError: a keyword nobody knows, naming the closest known one.
    """
    stored = {"Task": TASK_KEYWORDS, "Agent": AGENT_KEYWORDS,
              "Process": PROCESS_KEYWORDS}[kind]
    no_effect = NO_EFFECT_KEYWORDS.get(kind, set())
    accepted = set(stored) | set(extra)
    for key in given:
        if key in accepted:
            continue
        if key in no_effect:
            if (kind, key) not in _warned:
                _warned.add((kind, key))
                warnings.warn(f"{kind}({key}=...) is accepted for compatibility but has no "
                              "effect in ray-orch", RayOrchWarning, stacklevel=4)
            continue
        candidates = sorted(set(known) | accepted | no_effect)
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownKeywordError(
            f"{label or _where(kind, owner)}: unknown keyword '{key}'{hint} (known: "
            f"{', '.join(candidates)})", task=owner if kind == "Task" else None, field=key,
            agent=owner if kind == "Agent" else None, suggestion=close[0] if close else None)
    return dict(given)


# -- values ----------------------------------------------------------------------------

def number_problem(value: Any, *, integer: bool = False, minimum: float | None = None,
                   above: float | None = None, optional: bool = False) -> str | None:
    """Why ``value`` is not an acceptable number, or None when it is.

    Example:
        >>> number_problem(float("nan"))
        'must be a finite number, not nan'
        >>> number_problem(True, integer=True) is not None
        True
    """
    if value is None:
        return None if optional else "is required"
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return f"must be {kind}, not {type(value).__name__} {value!r}"
    if not integer and not math.isfinite(value):
        return f"must be a finite number, not {value!r}"
    if minimum is not None and value < minimum:
        return f"must be {kind} >= {minimum:g}, not {value!r}"
    if above is not None and value <= above:
        return f"must be {kind} > {above:g}, not {value!r}"
    return None


def is_task(value: Any) -> bool:
    """Whether ``value`` is a ``Task`` (by its class's shape: this module sits below it)."""
    kind = type(value)
    return callable(getattr(kind, "overrides_execute", None)) and hasattr(kind, "output_schema")


def is_agent(value: Any) -> bool:
    """Whether ``value`` is an ``Agent`` with a model (not a ``chat()`` adapter, not a Mock:
    the class itself must define the model call)."""
    kind = type(value)
    return callable(getattr(kind, "acomplete", None)) and hasattr(kind, "llm_config")


def _names_problem(value: Any, *, allow_tasks: bool = True) -> str | None:
    if not isinstance(value, (list, tuple)):
        return (f"must be a list of task names, not {type(value).__name__} {value!r}"
                + (" (write [" + repr(value) + "])" if isinstance(value, str) else ""))
    for ref in value:
        if isinstance(ref, str) and ref.strip():
            continue
        if allow_tasks and is_task(ref):
            continue
        return f"entries must be task names, not {type(ref).__name__} {ref!r}"
    return None


def condition_problems(condition: Any) -> list[tuple[str, str]]:
    """(field, message) for each malformed part of a decision's ``condition``."""
    if not isinstance(condition, dict):
        return [("condition", f"must be a dict {{'answer': ['task', ...]}}, not "
                 f"{type(condition).__name__} {condition!r}")]
    found: list[tuple[str, str]] = []
    for key, targets in condition.items():
        if not isinstance(key, str) or not key.strip():
            found.append(("condition", f"keys must be non-empty answer strings, not {key!r}"))
            continue
        if isinstance(targets, str):
            targets = [targets]  # a one-task route may be named alone
        problem = _names_problem(targets)
        if problem:
            found.append((f"condition['{key}']", problem))
    return found


def _is_str(value: Any, *, optional: bool = False, empty: bool = True) -> bool:
    if value is None:
        return optional
    return isinstance(value, str) and (empty or bool(value.strip()))


def _is_name(value: Any) -> bool:
    """A non-empty string with a UTF-8 form (names key checkpoints, metrics and logs; a
    lone surrogate has none)."""
    if not _is_str(value, empty=False):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- tasks -----------------------------------------------------------------------------

def check_task_alone(task: Any) -> None:
    """Check one task's own fields before ``Task.execute()`` runs it (no process).

    Raises:
        InvalidTaskFieldError: the first problem, or a WorkflowDefinitionError listing all.
    """
    problems: list[WorkflowDefinitionError] = []
    check_task_fields(task.id, task, problems)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise WorkflowDefinitionError(f"{len(problems)} problems in task '{task.id}':\n"
                                      f"{listing}", task=task.id, problems=problems)


def task_problems(name: str, task: Any) -> list[WorkflowDefinitionError]:
    """Every problem with a task's own fields (references are resolved by the graph).

    Args:
        name: the task's name in its workflow.
        task: the Task.

    Returns:
        One ``InvalidTaskFieldError`` per bad field, each naming ``name`` and the field.
    """
    problems: list[WorkflowDefinitionError] = []

    def bad(fieldname: str, message: str) -> None:
        problems.append(InvalidTaskFieldError(f"task '{name}': {fieldname} {message}",
                                              task=name, field=fieldname))

    if not _is_str(task.expected_output):
        bad("expected_output", f"must be a string, not {task.expected_output!r}")
    if task.name is not None and not _is_name(task.name):
        bad("name", f"must be a non-empty string of valid text, not {task.name!r}")
    for fieldname in ("context", "next_tasks"):
        value = getattr(task, fieldname)
        if value is not None and (problem := _names_problem(value)):
            bad(fieldname, problem)
    if task.context_fields is not None and not (
            isinstance(task.context_fields, (list, tuple))
            and all(_is_str(f, empty=False) for f in task.context_fields)):
        bad("context_fields", f"must be a list of field names, not {task.context_fields!r}")
    if task.condition is not None and task.task_type == "decision":
        for fieldname, message in condition_problems(task.condition):
            bad(fieldname, message)
    if not isinstance(task.guardrails, list):
        bad("guardrails", f"must be a list of callables or rule strings, not "
            f"{task.guardrails!r}")
    elif any(isinstance(g, str) for g in task.guardrails):
        for fieldname in ("agent", "fallback_agent"):
            judge = getattr(task, fieldname)
            if judge is not None and not is_agent(judge):
                bad("guardrails", f"has rule strings, which the task's {fieldname} judges "
                    f"with its model, but it is a {type(judge).__name__}, not an Agent")
                break
    checks: list[tuple[str, dict[str, Any]]] = [
        ("max_retries", {"integer": True, "minimum": 0}),
        ("validation_steps", {"integer": True, "minimum": 0}),
        ("retry_delay", {"minimum": 0}),
        ("timeout", {"above": 0, "optional": True}),
        ("cache_ttl", {"above": 0, "optional": True}),
        ("max_iterations", {"integer": True, "minimum": 1, "optional": True}),
        ("context_budget", {"integer": True, "minimum": 1, "optional": True}),
        ("max_visits", {"integer": True, "minimum": 1, "optional": True}),
    ]
    for fieldname, rule in checks:
        problem = number_problem(getattr(task, fieldname), **rule)
        if problem:
            bad(fieldname, problem)
    for fieldname in ("async_execution", "handle_missing_context",
                      "condition_on_previous_failure"):
        if not isinstance(getattr(task, fieldname), bool):
            bad(fieldname, f"must be True or False, not {getattr(task, fieldname)!r}")
    if not isinstance(getattr(task, "human_input", False), bool):
        bad("human_input", f"must be True or False, not {task.human_input!r}")
    elif task.human_input and task.task_type == "loop":
        bad("human_input", "does not apply to a loop task (approve what it feeds instead)")
    if getattr(task, "on_reject", "retry") not in ("retry", "fail"):
        bad("on_reject", f"must be 'retry' or 'fail', not {task.on_reject!r}")
    if task.loop_ragged not in ("error", "pad"):
        bad("loop_ragged", f"must be 'error' or 'pad', not {task.loop_ragged!r}")
    loop_data = task.loop_data
    if loop_data is not None and not isinstance(loop_data, (str, os.PathLike, list, tuple)):
        bad("loop_data", f"must be a CSV/JSON/JSONL path or a list, not "
            f"{type(loop_data).__name__}")
    if loop_data is not None and task.task_type != "loop":
        bad("loop_data", "only applies to task_type='loop'")
    if task.circuit_breaker is not None and not callable(
            getattr(task.circuit_breaker, "acquire", None)):
        bad("circuit_breaker", f"must be a CircuitBreaker, not "
            f"{type(task.circuit_breaker).__name__}")
    return problems


# -- agents ----------------------------------------------------------------------------

def check_agent(agent: Any) -> None:
    """Check an Agent's fields as it is made.

    Raises:
        InvalidTaskFieldError: naming the agent (its role) and the field.
    """
    from ray_orch.model.client import LLMConfig

    who = agent.role if isinstance(agent.role, str) else "?"

    def bad(fieldname: str, message: str) -> None:
        raise InvalidTaskFieldError(f"agent '{who}': {fieldname} {message}", field=fieldname,
                                    agent=who)

    for fieldname in ("goal", "backstory", "instructions"):
        if not _is_str(getattr(agent, fieldname)):
            bad(fieldname, f"must be a string, not {getattr(agent, fieldname)!r}")
    for fieldname in ("role", "name"):
        if getattr(agent, fieldname) is not None and not _is_name(getattr(agent, fieldname)):
            bad(fieldname, "must be a non-empty string of valid text (no lone surrogates), "
                f"not {getattr(agent, fieldname)!r}")
    for fieldname in ("name", "base_url", "api_key"):
        if not _is_str(getattr(agent, fieldname), optional=True, empty=False):
            bad(fieldname, "must be a non-empty string or None, not "
                f"{type(getattr(agent, fieldname)).__name__}")
    llm = agent.llm
    if not (llm is None or _is_str(llm, empty=False) or isinstance(llm, (dict, LLMConfig))):
        bad("llm", f"must be a model string, a dict of litellm options or None, not "
            f"{type(llm).__name__} {llm!r}")
    if isinstance(llm, dict) and not _is_str(llm.get("model"), optional=True, empty=False):
        bad("llm", f"['model'] must be a non-empty model string, not {llm.get('model')!r}")
    if isinstance(llm, dict):
        known = PROVIDER_OPTIONS | _LLM_DICT_KEYS
        for key in llm:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                raise UnknownKeywordError(
                    f"agent '{who}': llm has unknown option {key!r}"
                    + (f"; did you mean '{close[0]}'?" if close else "")
                    + " (provider-specific options go in extra_body={...})",
                    field="llm", agent=who, suggestion=close[0] if close else None)
        _check_options({k: v for k, v in llm.items() if k in PROVIDER_OPTIONS}, bad)
    rules: list[tuple[str, dict[str, Any]]] = [
        ("pool_size", {"integer": True, "minimum": 1}),
        ("max_concurrency", {"integer": True, "minimum": 1}),
        ("timeout", {"above": 0}), ("num_cpus", {"minimum": 0})]
    for fieldname, rule in rules:
        problem = number_problem(getattr(agent, fieldname), **rule)
        if problem:
            bad(fieldname, problem)
    if agent.resources is not None and not (
            isinstance(agent.resources, dict) and all(
                isinstance(k, str) and number_problem(v, minimum=0) is None
                for k, v in agent.resources.items())):
        bad("resources", f"must map resource names to numbers >= 0, not {agent.resources!r}")
    if not isinstance(agent.verbose, bool):
        bad("verbose", f"must be True or False, not {agent.verbose!r}")
    strategy = agent.scheduling_strategy
    if strategy is not None and not (strategy in ("DEFAULT", "SPREAD") or (
            not isinstance(strategy, str) and type(strategy).__module__.startswith("ray."))):
        bad("scheduling_strategy", "must be 'DEFAULT', 'SPREAD' or a Ray scheduling "
            f"strategy object, not {strategy!r}")
    if agent.circuit_breaker is not None and not callable(
            getattr(agent.circuit_breaker, "acquire", None)):
        bad("circuit_breaker", f"must be a CircuitBreaker, not "
            f"{type(agent.circuit_breaker).__name__}")
    _check_options(agent.llm_options, bad)


def _check_options(options: dict[str, Any], bad: Any) -> None:
    for key, value in options.items():
        if key in _NUMERIC_OPTIONS:
            problem = number_problem(value, minimum=_NUMERIC_OPTIONS[key], optional=True)
        elif key in _INTEGER_OPTIONS:
            problem = number_problem(value, integer=True, minimum=_INTEGER_OPTIONS[key],
                                     optional=True)
        elif key in ("extra_body", "extra_headers", "logit_bias", "metadata"):
            problem = None if value is None or isinstance(value, dict) else \
                f"must be a dict, not {type(value).__name__}"
        elif key == "stop":
            problem = None if value is None or isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(s, str) for s in value)) else \
                f"must be a string or a list of strings, not {value!r}"
        else:
            problem = None
        if problem:
            bad(key, problem)


# -- processes -------------------------------------------------------------------------

_PROCESS_NUMBERS: dict[str, dict[str, Any]] = {
    "max_visits": {"integer": True, "minimum": 1},
    "max_steps": {"integer": True, "minimum": 1, "optional": True},
    "max_manager_calls": {"integer": True, "minimum": 1, "optional": True},
    "budget_tokens": {"integer": True, "minimum": 1, "optional": True},
    "budget_usd": {"above": 0, "optional": True},
    "metrics_port": {"integer": True, "minimum": 0, "optional": True},
}


def check_process(fields: dict[str, Any]) -> None:
    """Check a Process's arguments as it is made.

    Raises:
        InvalidTaskFieldError: naming the field (and the task, for a bad entry of tasks).
    """
    def bad(fieldname: str, message: str, task: str | None = None) -> None:
        raise InvalidTaskFieldError(f"Process: {fieldname} {message}", task=task,
                                    field=fieldname)

    tasks = fields["tasks"]
    if isinstance(tasks, dict):
        for key, task in tasks.items():
            if not _is_name(key):
                bad("tasks", f"keys must be non-empty task names of valid text, not {key!r}")
            if not is_task(task):
                bad("tasks", f"['{key}'] must be a Task, not {type(task).__name__}", key)
    elif isinstance(tasks, (list, tuple)):
        for i, task in enumerate(tasks):
            if not is_task(task):
                bad("tasks", f"[{i}] must be a Task, not {type(task).__name__} {task!r}")
    else:
        bad("tasks", "must be a dict {'name': Task} or a list of Tasks, not "
            f"{type(tasks).__name__} {tasks!r}")
    if not tasks:
        bad("tasks", "is empty: a process needs at least one task")
    agents = fields["agents"]
    if agents is not None and not (isinstance(agents, (list, tuple)) and all(
            callable(getattr(a, "chat", None)) for a in agents)):
        bad("agents", f"must be a list of Agents, not {agents!r}")
    if fields["on_failure"] not in ("fail", "continue"):
        bad("on_failure", f"must be 'fail' or 'continue', not {fields['on_failure']!r}")
    if not _is_name(fields["name"]):
        bad("name", f"must be a non-empty string of valid text, not {fields['name']!r}")
    for fieldname, rule in _PROCESS_NUMBERS.items():
        problem = number_problem(fields[fieldname], **rule)
        if problem:
            bad(fieldname, problem)
    for fieldname in ("cache", "verbose", "metrics"):
        if not isinstance(fields[fieldname], bool):
            bad(fieldname, f"must be True or False, not {fields[fieldname]!r}")
    if fields["progress"] is not None and not isinstance(fields["progress"], bool):
        bad("progress", f"must be True, False or None, not {fields['progress']!r}")
    if fields["checkpoint_dir"] is not None and not isinstance(
            fields["checkpoint_dir"], (str, os.PathLike)):
        bad("checkpoint_dir", f"must be a path, not {type(fields['checkpoint_dir']).__name__}")
    manager = fields["manager_llm"]
    if manager is not None and not (_is_str(manager, empty=False) or isinstance(manager, dict)
                                    or type(manager).__name__ == "LLMConfig"):
        bad("manager_llm", "must be a model string, a dict of litellm options or None, not "
            f"{type(manager).__name__} {manager!r}")
    if isinstance(manager, dict) and not _is_str(manager.get("model"), empty=False):
        bad("manager_llm", f"['model'] must be a non-empty model string, not "
            f"{manager.get('model')!r}")
    if not _is_str(fields["metrics_host"], optional=True, empty=False):
        bad("metrics_host", f"must be a host name or None, not {fields['metrics_host']!r}")
    for fieldname in ("runtime_env", "ray_init"):
        if fields[fieldname] is not None and not isinstance(fields[fieldname], dict):
            bad(fieldname, f"must be a dict, not {type(fields[fieldname]).__name__}")


# -- one task's fields, with its tools -------------------------------------------------

def is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def refs(value: Any, *, one: bool = False) -> list[Any]:
    """The references in a list field (a wrong type, which validation names, gives none)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] if one and isinstance(value, str) else []


def check_task_fields(name: str, task: Any, problems: list[WorkflowDefinitionError]) -> None:
    """Add every problem of one task's own fields (its tools included) to ``problems``."""
    problems.extend(task_problems(name, task))

    def bad(fieldname: str, message: str) -> None:
        problems.append(InvalidTaskFieldError(f"task '{name}': {fieldname} {message}",
                                              task=name, field=fieldname))

    if not isinstance(task.description, str) or not task.description.strip():
        bad("description", "must be a non-empty string")
    if task.task_type not in ("task", "decision", "loop"):
        bad("task_type", f"must be 'task', 'decision' or 'loop', not {task.task_type!r}")
    for fieldname in ("output_json", "output_pydantic"):
        value = getattr(task, fieldname)
        if value is not None and not is_model(value):
            bad(fieldname, f"must be a pydantic BaseModel subclass, not {value!r}")
    if task.task_type == "decision" and not task.condition:
        bad("condition", "is required for a decision task: {'answer': ['task', ...]}")
    if task.condition and task.task_type != "decision":
        bad("condition", "only applies to task_type='decision'")
    if isinstance(task.condition, dict) and task.task_type == "decision" and \
            not route_keys(task.condition):
        bad("condition", "must map at least one answer to a list of task names")
    for i, guard in enumerate(refs(task.guardrails)):
        if not (callable(guard) or isinstance(guard, str)):
            bad(f"guardrails[{i}]", f"must be a callable or a string rule, not {guard!r}")
    for fieldname in ("agent", "fallback_agent"):
        agent = getattr(task, fieldname)
        if agent is not None and not callable(getattr(agent, "chat", None)):
            bad(fieldname, f"must be an Agent (or have chat(prompt)), not {type(agent).__name__}")
    if task.context_overflow not in ("fail", "keep_recent", "summarize"):
        bad("context_overflow", f"must be 'fail', 'keep_recent' or 'summarize', not "
            f"{task.context_overflow!r}")
    from ray_orch.tools.spec import task_tool_problems

    problems.extend(task_tool_problems(name, task))
