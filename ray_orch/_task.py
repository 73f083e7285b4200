"""``Task``: one unit of work for an agent, with every option the guide names.

A Task is plain data until a ``Process`` runs it (on Ray) or ``execute()`` runs it
in-process. Subclasses may override ``execute()`` (the guide's ``CachedTask`` and
``CircuitBreakerTask``); in a process the override runs in the run's Supervisor, where the
object lives for the whole run, and its ``super().execute()`` dispatches the attempt to
the agent's pool.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ._output import TaskOutput
from ._validate import TASK_KEYWORDS, accept_keywords, no_positional

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

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
                 **extra: Any) -> None:
        owner = name or id
        label = f"Task(description={description!r:.60})" if owner is None else f"task '{owner}'"
        no_positional("Task", positional, owner=owner, first="description", label=label)
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
        self.extra = extra
        for key in TASK_KEYWORDS - _KNOWN:  # read by other features (tools, ...); None if
            if not hasattr(self, key):       # not given
                setattr(self, key, extra.get(key))
        self._auto_id = f"task_{next(_ids)}"
        self.status: TaskStatus = "pending"
        self.result: TaskOutput | None = None
        self.error: BaseException | None = None
        # Set by the engine before a run: upstream outputs, and what is missing.
        self._context_outputs: dict[str, TaskOutput] = {}
        self._missing_context: dict[str, str] = {}
        # Set by Process(tasks=...): the workflow's tasks by name, so execute() outside a
        # process can resolve context names; never sent to the cluster.
        self._peers: dict[str, Task] | None = None

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task's name in its workflow."""
        return self.name or self._auto_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, type={self.task_type!r}, status={self.status!r})"

    def output_schema(self) -> type[BaseModel] | None:
        """The pydantic model the answer must follow, if any."""
        return self.output_pydantic or self.output_json

    def overrides_execute(self) -> bool:
        """Whether a subclass replaced ``execute()`` (then it runs in the Supervisor)."""
        return type(self).execute is not Task.execute

    @property
    def agent_role(self) -> str | None:
        from ._agent import role_of

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
        from ._attempt import run_local

        return _run_sync(run_local(self, inputs))

    async def aexecute(self, inputs: dict[str, Any] | None = None) -> TaskOutput:
        """Async form of ``execute()`` (in-process, no Ray)."""
        from ._attempt import run_local

        return await run_local(self, inputs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Run state and upstream outputs stay on the driver; the engine sends context apart.
        state["error"] = None
        state["_context_outputs"] = {}
        state["_peers"] = None
        return state


def _listed(value: Any) -> Any:
    """A list or tuple as a new list; None as None; anything else as given."""
    return list(value) if isinstance(value, (list, tuple)) else value


_KNOWN = frozenset(inspect.signature(Task.__init__).parameters) - {"self", "positional",
                                                                    "extra"}

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    # One long-lived loop for sync callers: litellm keeps clients and a logging worker
    # bound to the loop they were created on, so a fresh asyncio.run() per call would
    # leave them behind (and warn) every time.
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="ray-orch-loop",
                             daemon=True).start()
            atexit.register(_stop_background_loop, _loop)
        return _loop


def _stop_background_loop(loop: asyncio.AbstractEventLoop) -> None:
    # Let what still runs there (litellm's logging worker, HTTP sessions) end cleanly at
    # exit, instead of being destroyed while pending.
    async def finish() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_asyncgens()  # closes HTTP sessions

    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even under a running event loop."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    # Called from a coroutine on the background loop itself: it cannot wait on its own
    # loop, so this one call gets a thread and a loop of its own.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="ray-orch-execute")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
