"""``Task``: one unit of work for an agent, with every option the guide names.

A Task is a definition (``policy.definition``): a ``Process`` runs it (on Ray) or
``execute()`` runs it in-process, and neither writes onto it. ``status``, ``result`` and
``error`` are read-only views of its last run (``policy.outcomes``). Subclasses may
override ``execute()`` (the guide's ``CachedTask`` and ``CircuitBreakerTask``); in a
process the override runs in the run's Supervisor, on the run's own copy of the task,
and its ``super().execute()`` dispatches the attempt to the agent's pool.
"""

from __future__ import annotations

import threading
from typing import Any

from ray_orch.core.output import TaskOutput
from ray_orch.core.sync import run_sync
from ray_orch.policy.definition import TaskDefinition
from ray_orch.policy.outcomes import TaskStatus, outcome_of, set_outcome

__all__ = ["Task", "TaskStatus"]

# Set by the Supervisor while a user's execute() override runs in one of its threads:
# base Task.execute() then hands the attempt to the run's pools instead of running here.
_bridge = threading.local()


class Task(TaskDefinition):
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

    # -- the last run, read-only -------------------------------------------------------

    @property
    def status(self) -> TaskStatus:
        """The task's status in its last run (``"pending"`` before any)."""
        return outcome_of(self).status

    @property
    def result(self) -> TaskOutput | None:
        """The task's output in its last run (None before one, or if it did not
        complete). A script may set it (the guide's ``CheckpointedProcess`` restores
        one): ``execute()`` of a task that has it as context reads it."""
        return outcome_of(self).result

    @result.setter
    def result(self, output: TaskOutput | None) -> None:
        set_outcome(self, result=output)

    @property
    def error(self) -> BaseException | None:
        """Why the task's last in-process ``execute()`` failed (None if it did not)."""
        return outcome_of(self).error

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

    def overrides_execute(self) -> bool:
        """Whether a subclass replaced ``execute()`` (then it runs in the Supervisor)."""
        return type(self).execute is not Task.execute

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
