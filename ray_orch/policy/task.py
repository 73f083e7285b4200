"""``Task``: one unit of work for an agent, with every option the guide names.

A Task is plain data until a ``Process`` runs it (on Ray) or ``execute()`` runs it
in-process. Subclasses may override ``execute()`` (the guide's ``CachedTask`` and
``CircuitBreakerTask``); in a process the override runs in the run's Supervisor, where the
object lives for the whole run, and its ``super().execute()`` dispatches the attempt to
the agent's pool.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ray_orch.core.output import TaskOutput
from ray_orch.core.sync import run_sync
from ray_orch.policy.fields import TASK_KEYWORDS, accept_keywords, no_positional

if TYPE_CHECKING:
    from ray_orch.policy.breaker import CircuitBreaker

__all__ = ["Task", "TaskStatus"]

TaskStatus = Literal["pending", "running", "completed", "failed", "skipped"]
TaskType = Literal["task", "decision", "loop"]
ContextOverflow = Literal["fail", "keep_recent", "summarize"]

_ids = itertools.count(1)
# Set by the Supervisor while a user's execute() override runs in one of its threads:
# base Task.execute() then hands the attempt to the run's pools instead of running here.
_bridge = threading.local()


class Task:
    """A unit of work.

    Args:
        description: what to do; ``{placeholders}`` are filled from loop rows / inputs.
        agent: the Agent that does it (or any object with ``chat(prompt) -> str``).
        expected_output: what a good answer looks like (added to the prompt).
        context: upstream tasks (names or Task objects) whose outputs this task sees.
        name: the task's name (a dict key in ``Process(tasks={...})`` wins).
        output_json / output_pydantic: a pydantic model the answer must follow; parsed
            into ``TaskOutput.json_dict`` / ``.pydantic``.
        max_retries: retries after an exception (rate limit, timeout, 5xx, ...).
        retry_delay: base seconds of exponential backoff with jitter between retries.
        validation_steps: retries after a guardrail or schema rejection (the rejection
            is fed back into the next prompt).
        guardrails / guardrail: callables ``(TaskOutput) -> GuardrailResult | bool |
            (bool, str)``, or strings judged by the agent's model.
        fallback_agent: takes over when the task's attempts are exhausted.
        task_type: ``"task"``, ``"decision"`` (routes by ``condition``) or ``"loop"``.
        condition: for decisions, ``{"answer": ["task", ...]}``; a ``"default"`` key is
            the route when the answer matches no other key.
        next_tasks: tasks started when this one completes (control flow).
        loop_data: for loops: a CSV / JSON / JSONL path, a list, or None to loop over
            the output of the first context task.
        max_iterations: error if a loop has more items than this.
        async_execution: in a sequential process, run alongside its neighbours.
        context_fields: only these fields of structured upstream outputs enter the prompt.
        context_budget: max tokens of context; ``context_overflow`` says what happens
            past it (``"fail"``, ``"keep_recent"``, ``"summarize"``).
        handle_missing_context: run even if some context tasks failed or were skipped.
        condition_on_previous_failure: run only if the task before this one failed.
        timeout: seconds for the whole task (all attempts, and a fallback agent's),
            counted from when a pool member takes it and is up: waiting for a free slot
            and a new member's process start do not count.
        cache_ttl: cache this task's result for that many seconds.
        circuit_breaker: a ``CircuitBreaker`` shared by every run and node.
        max_visits: how often a cycle may re-enter this task.
        tools: tools for this task only, added to its agent's (see ``Agent``).
        max_tool_calls: tool calls one attempt may make (default: the agent's, else 20).
        tool_errors: ``"return"`` or ``"raise"`` (default: the agent's, else "return").
        is_start: in a workflow, the task the run starts from (PraisonAI's keyword;
            ``AgentTeam`` puts it first).
        callback / on_task_complete: ``fn(output)`` (or ``async``), called once on the
            driver with the TaskOutput when the task completes (``AgentTeam`` runs).
        fail_on_callback_error: a callback's exception fails the run (else it is logged
            and kept in ``output.callback_error``).
        output_file: write ``str(output)`` to this path on the driver when the task
            completes (``create_directory=True`` makes missing parent directories).
        input_file: a loop's items, read the way PraisonAI reads them (a CSV row or a
            text line per item); sets ``loop_data``.
        depends_on: PraisonAI's alias of ``context``.
        human_input: a person approves, edits or rejects the output before anything
            downstream starts (``Process(approval_handler=...)``, the console, or a
            durable pause with a checkpoint store).
        on_reject: a rejected output is asked again with the reason (``"retry"``, within
            ``max_retries``), or fails the task (``"fail"``).
        loop_ragged: a CSV ``loop_data`` row with more or fewer fields than its header is
            a ``LoopDataError`` (``"error"``), or padded with "" / trimmed (``"pad"``).
        tools, max_tool_calls, tool_errors: stored for the tools feature.

    Only ``description`` may be given by position; a keyword the Task does not know
    (``contex=``) is an ``UnknownKeywordError`` naming the closest one. Field types and
    ranges are checked before any model call (by the process, or by ``execute()``).

    Example:
        >>> t = Task(description="Extract data from API", expected_output="Raw JSON data")
        >>> t.status
        'pending'
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
        from ray_orch.policy.praison import TASK_NO_EFFECT, no_effect, task_extras

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
        for key in TASK_KEYWORDS - _KNOWN:  # read by other features; None if not given
            if not hasattr(self, key):
                setattr(self, key, extra.get(key))
        self._auto_id = f"task_{next(_ids)}"
        self.is_start = bool(is_start)
        self.callback = callback if callback is not None else on_task_complete
        self.fail_on_callback_error = bool(fail_on_callback_error)
        self.output_file = output_file
        self.create_directory = bool(create_directory)
        self.input_file = input_file
        task_extras(self, callback=callback, on_task_complete=on_task_complete,
                    depends_on=depends_on)
        self.status: TaskStatus = "pending"
        self.result: TaskOutput | None = None
        self.error: BaseException | None = None
        # Set by the engine before a run: upstream outputs, and what is missing.
        self._context_outputs: dict[str, TaskOutput] = {}
        self._missing_context: dict[str, str] = {}
        # Set by Process(tasks=...): the workflow's tasks by name, so execute() outside a
        # process can resolve context names; never sent to the cluster.
        self._peers: dict[str, Task] | None = None
        # Set by a run with checkpoints: where its members journal this task's tool calls.
        self._tool_journal: Any = None
        # Set by the workflow graph: what each decision route leads to (policy/decide.py).
        self._route_descriptions: dict[str, str] = {}

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task's name in its workflow."""
        return self.name or self._auto_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, type={self.task_type!r}, status={self.status!r})"

    # PraisonAI's private guardrail hooks, which its guardrail example calls.
    @property
    def _guardrail_fn(self) -> Any:
        from ray_orch.policy.praison import guardrail_fn

        return guardrail_fn(self)

    def _process_guardrail(self, output: TaskOutput) -> Any:
        """Judge ``output`` by this task's guardrails now (``GuardrailResult``)."""
        from ray_orch.policy.agent_chat import judge_now

        return judge_now(self, output)

    def output_schema(self) -> type[BaseModel] | None:
        """The pydantic model the answer must follow, if any."""
        return self.output_pydantic or self.output_json

    def overrides_execute(self) -> bool:
        """Whether a subclass replaced ``execute()`` (then it runs in the Supervisor)."""
        return type(self).execute is not Task.execute

    @property
    def agent_role(self) -> str | None:
        from ray_orch.policy.agent import role_of

        return role_of(self.agent)

    # -- running -----------------------------------------------------------------------

    def execute(self, inputs: dict[str, Any] | None = None) -> TaskOutput:
        """Run the task once (with its retries, guardrails and fallback) and return its output.

        Outside a process this runs in this Python process, without Ray, by calling
        ``self.agent.chat(...)`` (or the model directly for an ``Agent``).

        Args:
            inputs: values for ``{placeholders}`` in the description.

        Returns:
            The task's output; also stored in ``self.result``.

        Raises:
            TaskFailedError: every attempt failed (subclasses say why).

        Example:
            >>> from unittest.mock import Mock
            >>> agent = Mock(); agent.chat.return_value = "Test result"
            >>> Task(description="Test task", agent=agent).execute().raw
            'Test result'
        """
        bridge = getattr(_bridge, "call", None)
        if bridge is not None:
            return bridge(self, inputs)
        from ray_orch.policy.attempt import run_local

        return run_sync(run_local(self, inputs))

    async def aexecute(self, inputs: dict[str, Any] | None = None) -> TaskOutput:
        """Async form of ``execute()`` (in-process, no Ray)."""
        from ray_orch.policy.attempt import run_local

        return await run_local(self, inputs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Run state and upstream outputs stay on the driver; the engine sends context apart.
        state["error"] = None
        state["_context_outputs"] = {}
        state["_peers"] = None
        # Callbacks run on the driver: the cluster only needs to know to send the output.
        state["_send_output"] = state.get("callback") is not None or bool(state.get("output_file"))
        state["callback"] = None
        return state


def _listed(value: Any) -> Any:
    """A list or tuple as a new list; None as None; anything else as given."""
    return list(value) if isinstance(value, (list, tuple)) else value


_KNOWN = frozenset(inspect.signature(Task.__init__).parameters) - {"self", "positional",
                                                                    "extra"}
