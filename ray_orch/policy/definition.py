"""``TaskDefinition``: the fields of a ``Task``, as its user wrote them.

A definition is what the user built; nothing a run does writes onto it. ``policy.task``'s
``Task`` adds running it (``execute()``) and read-only views of its last run (``status``,
``result``, ``error``, kept in ``policy.outcomes``). The attempt path below ``Task``
(attempts, breakers, caching, guardrails) reads a task through this class, so that it does
not import the module that runs it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ray_orch.policy.fields import TASK_KEYWORDS, accept_keywords, no_positional

if TYPE_CHECKING:
    from ray_orch.policy.breaker import CircuitBreaker

__all__ = ["ContextOverflow", "TaskDefinition", "TaskType"]

TaskType = Literal["task", "decision", "loop"]
ContextOverflow = Literal["fail", "keep_recent", "summarize"]

_ids = itertools.count(1)


class TaskDefinition:
    """A task's fields: every argument ``Task`` takes (``Task`` documents each).

    Example:
        >>> d = TaskDefinition(description="Extract data", expected_output="JSON")
        >>> (d.task_type, d.max_retries, d.id.startswith("task_"))
        ('task', 3, True)
    """

    def __init__(self, description: str = "", *positional: Any, agent: Any = None,
                 expected_output: str = "",
                 context: list[Any] | None = None, name: str | None = None,
                 output_json: type[BaseModel] | None = None,
                 output_pydantic: type[BaseModel] | None = None,
                 max_retries: int = 3, retry_delay: float = 0.2, validation_steps: int = 2,
                 guardrails: list[Callable[..., Any] | str] | None = None,
                 guardrail: Callable[..., Any] | str | None = None,
                 fallback_agent: Any = None, task_type: TaskType = "task",
                 condition: dict[str, list[str] | str] | None = None,
                 next_tasks: list[str] | None = None, loop_data: Any = None,
                 max_iterations: int | None = None, async_execution: bool = False,
                 context_fields: list[str] | None = None, context_budget: int | None = None,
                 context_overflow: ContextOverflow = "fail",
                 handle_missing_context: bool = False,
                 condition_on_previous_failure: bool = False, timeout: float | None = None,
                 cache_ttl: float | None = None, circuit_breaker: CircuitBreaker | None = None,
                 max_visits: int | None = None, id: str | None = None,
                 loop_ragged: Literal["error", "pad"] = "error",
                 tools: list[Any] | None = None, max_tool_calls: int | None = None,
                 tool_errors: str | None = None,
                 is_start: bool = False, callback: Callable[..., Any] | None = None,
                 on_task_complete: Callable[..., Any] | None = None,
                 fail_on_callback_error: bool = False, output_file: str | None = None,
                 create_directory: bool = False, input_file: str | None = None,
                 depends_on: list[Any] | None = None, human_input: bool = False,
                 on_reject: Literal["retry", "fail"] = "retry",
                 **extra: Any) -> None:
        owner = name or id
        label = f"Task(description={description!r:.60})" if owner is None else f"task '{owner}'"
        no_positional("Task", positional, owner=owner, first="description", label=label)
        from ray_orch.policy.praison import TASK_NO_EFFECT, no_effect

        # PraisonAI's keywords with no effect here warn once; any other unknown is an error.
        extra = no_effect("Task", TASK_NO_EFFECT, extra, known=extra)
        extra = accept_keywords("Task", extra, known=_KNOWN, owner=owner, label=label)
        self.description = description
        self.agent = agent
        self.expected_output = expected_output
        # Wrong shapes are kept as given (not split or coerced) for validation to name.
        self.context = _listed(context)
        self.name = name or id
        self.output_json = output_json
        self.output_pydantic = output_pydantic
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.validation_steps = validation_steps
        self.guardrails: list[Any] = _listed(guardrails) or []
        if guardrail is not None and isinstance(self.guardrails, list):
            self.guardrails.append(guardrail)
        self.fallback_agent = fallback_agent
        self.task_type = task_type
        self.condition = (dict(condition) or None) if isinstance(condition, dict) else condition
        self.next_tasks = _listed(next_tasks) or []
        self.loop_data = loop_data
        self.max_iterations = max_iterations
        self.async_execution = async_execution
        self.context_fields = _listed(context_fields) or None
        self.context_budget = context_budget
        self.context_overflow = context_overflow
        self.handle_missing_context = handle_missing_context
        self.condition_on_previous_failure = condition_on_previous_failure
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.circuit_breaker = circuit_breaker
        self.max_visits = max_visits
        self.loop_ragged = loop_ragged
        self.tools = _listed(tools) or []
        self.max_tool_calls = max_tool_calls
        self.tool_errors = tool_errors
        self.human_input = human_input
        self.on_reject = on_reject
        self.extra = extra
        self._set_extra_keywords(extra)
        self._auto_id = f"task_{next(_ids)}"
        self._set_driver_side(is_start=is_start, callback=callback,
                              on_task_complete=on_task_complete,
                              fail_on_callback_error=fail_on_callback_error,
                              output_file=output_file, create_directory=create_directory,
                              input_file=input_file, depends_on=depends_on)

    def _set_extra_keywords(self, extra: dict[str, Any]) -> None:
        """PraisonAI's keywords other features read: as given, else None."""
        for key in TASK_KEYWORDS - _KNOWN:
            if not hasattr(self, key):
                setattr(self, key, extra.get(key))

    def _set_driver_side(self, *, is_start: bool, callback: Callable[..., Any] | None,
                         on_task_complete: Callable[..., Any] | None,
                         fail_on_callback_error: bool, output_file: str | None,
                         create_directory: bool, input_file: str | None,
                         depends_on: list[Any] | None) -> None:
        """The fields PraisonAI's scripts set that act on the driver: the start task,
        callbacks, output and input files, ``depends_on``."""
        from ray_orch.policy.praison import task_extras

        self.is_start = bool(is_start)
        self.callback = callback if callback is not None else on_task_complete
        self.fail_on_callback_error = bool(fail_on_callback_error)
        self.output_file = output_file
        self.create_directory = bool(create_directory)
        self.input_file = input_file
        task_extras(self, callback=callback, on_task_complete=on_task_complete,
                    depends_on=depends_on)

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task's name in its workflow."""
        return self.name or self._auto_id

    def output_schema(self) -> type[BaseModel] | None:
        """The pydantic model the answer must follow, if any."""
        return self.output_pydantic or self.output_json

    @property
    def agent_role(self) -> str | None:
        """The role of the task's agent (None without one)."""
        from ray_orch.policy.agent import role_of

        return role_of(self.agent)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Callbacks run on the driver: the cluster only needs to know to send the output.
        state["_send_output"] = state.get("callback") is not None or bool(state.get("output_file"))
        state["callback"] = None
        return state


def _listed(value: Any) -> Any:
    """A list or tuple as a new list; None as None; anything else as given."""
    return list(value) if isinstance(value, (list, tuple)) else value


_KNOWN = frozenset(inspect.signature(TaskDefinition.__init__).parameters) - {
    "self", "positional", "extra"}
