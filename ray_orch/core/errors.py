"""The one exception tree of ray-orch.

User mistakes (found before any LLM call where possible) are kept apart from runtime
failures, so a caller can tell "fix your script" from "the run went wrong":

    RayOrchError
    ├── WorkflowDefinitionError        the workflow as written cannot run
    │   ├── UnknownTaskError           a name in context / next_tasks / condition resolves to no task
    │   ├── DuplicateTaskError         two tasks share one name
    │   ├── InvalidTaskFieldError      a field has the wrong type or value (names task and field)
    │   │   └── UnknownKeywordError    a keyword Task / Agent / Process does not know (typo?)
    │   ├── LoopDataError              loop_data unreadable, empty, or placeholders without columns
    │   ├── UnboundedCycleError        a cycle that no bound can end
    │   ├── MissingAgentError          a task has no agent and no default exists
    │   ├── ModelNotConfiguredError    no model given and no default model available
    │   │   └── MissingAPIKeyError     a hosted model's key variable is not set
    │   ├── ToolDefinitionError        a tool cannot be offered (not callable, no schema, duplicate
    │   │                              name, an MCP server that fails to start)
    │   └── SerializationError         a task or agent cannot be pickled for the cluster
    ├── ResumeError                    a checkpoint cannot be resumed (drift, corruption)
    │   └── CheckpointCorruptError     a checkpoint record failed its integrity check
    └── RunError                       the run itself went wrong
        ├── TaskFailedError            a task exhausted its attempts
        │   ├── OutputValidationError  the reply never matched output_json / output_pydantic
        │   ├── GuardrailFailedError   the guardrails rejected every attempt, or one raised
        │   ├── RateLimitError         the provider asked to wait longer than ray-orch may
        │   ├── ContextBudgetError     the context exceeds the task's token budget (policy "fail")
        │   ├── ToolCallError          a tool call failed and the task has tool_errors="raise"
        │   └── ToolLoopError          the model kept calling tools past max_tool_calls
        ├── LLMError                   a model call failed (``retryable`` says whether to retry)
        ├── MCPSessionError            an MCP server's session broke (the server exited, the
        │                              connection dropped) or it cannot be started again
        ├── MCPToolError               an MCP server refused a tool call (unknown tool, bad
        │                              arguments, a result marked as an error)
        ├── TaskTimeoutError           a task exceeded its timeout
        ├── CircuitOpenError           a circuit breaker refused the call (raise mode)
        ├── DecisionError              a decision's answer matched no route and there is no default
        ├── LoopLimitError             a loop exceeded max_iterations
        ├── StepLimitError             a cycle exceeded the visit limit or the run's step limit
        ├── BudgetExceededError        the run's token or cost budget was reached
        └── RunCancelledError          the run was cancelled (Ctrl-C or Process.cancel())

Every message names the task and the field, and what was expected.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceededError",
    "CheckpointCorruptError",
    "CircuitOpenError",
    "ContextBudgetError",
    "DecisionError",
    "DuplicateTaskError",
    "GuardrailFailedError",
    "InvalidTaskFieldError",
    "LLMError",
    "LoopDataError",
    "LoopLimitError",
    "MCPSessionError",
    "MCPToolError",
    "MissingAPIKeyError",
    "MissingAgentError",
    "ModelNotConfiguredError",
    "OutputValidationError",
    "RateLimitError",
    "RayOrchError",
    "RayOrchWarning",
    "ResumeError",
    "RunCancelledError",
    "RunError",
    "SerializationError",
    "StepLimitError",
    "SupervisorLostError",
    "TaskFailedError",
    "TaskTimeoutError",
    "ToolCallError",
    "ToolDefinitionError",
    "ToolLoopError",
    "UnboundedCycleError",
    "UnknownKeywordError",
    "UnknownTaskError",
    "WorkflowDefinitionError",
]


class RayOrchError(Exception):
    """Root of every error ray-orch raises."""


class WorkflowDefinitionError(RayOrchError):
    """The workflow as written cannot run.

    Raised before any LLM call. When validation finds several problems, ``problems``
    holds every one of them (each itself a ``WorkflowDefinitionError``) and the message
    lists them all.
    """

    task: str | None
    """The task at fault, if one is."""
    field: str | None
    """The field (or keyword) at fault."""
    agent: str | None
    """The agent at fault (its role), for a mistake in an ``Agent``."""
    problems: list[WorkflowDefinitionError]
    """Every problem found, when validation found several."""

    def __init__(self, message: str, *, task: str | None = None, field: str | None = None,
                 problems: list[WorkflowDefinitionError] | None = None,
                 agent: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.field = field
        self.agent = agent
        self.problems = problems or []

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class UnknownTaskError(WorkflowDefinitionError):
    """A name in ``context``, ``next_tasks`` or ``condition`` resolves to no task."""


class DuplicateTaskError(WorkflowDefinitionError):
    """Two tasks share one name."""


class InvalidTaskFieldError(WorkflowDefinitionError):
    """A task field has the wrong type or value."""


class UnknownKeywordError(InvalidTaskFieldError):
    """A keyword that ``Task``, ``Agent`` or ``Process`` does not know (``field`` is it).

    ``suggestion`` is the closest known keyword, if one is close.
    """

    suggestion: str | None = None

    def __init__(self, message: str, *, task: str | None = None, field: str | None = None,
                 agent: str | None = None, suggestion: str | None = None) -> None:
        super().__init__(message, task=task, field=field, agent=agent)
        self.suggestion = suggestion


class LoopDataError(WorkflowDefinitionError):
    """``loop_data`` is unreadable or empty, or placeholders have no matching column."""


class UnboundedCycleError(WorkflowDefinitionError):
    """A cycle in the graph that no decision or bound can end."""


class MissingAgentError(WorkflowDefinitionError):
    """A task has no agent and the process has no default."""


class ModelNotConfiguredError(WorkflowDefinitionError):
    """No model was given and no default model is available."""


class MissingAPIKeyError(ModelNotConfiguredError):
    """A hosted model needs an API key and its provider's variable is not set (say
    ``OPENAI_API_KEY``): known before Ray starts, never a retried authentication error."""


class SerializationError(WorkflowDefinitionError):
    """A task or agent cannot be pickled to be sent to the cluster."""


class ToolDefinitionError(WorkflowDefinitionError):
    """A tool cannot be offered to the model: not callable, parameters that cannot become
    a JSON schema, two tools with one name on an agent, or an MCP server that fails to
    start (the message names its command and ends with the tail of its stderr)."""


class ResumeError(RayOrchError):
    """A run cannot be resumed from its checkpoint."""


class CheckpointCorruptError(ResumeError):
    """A checkpoint record failed its integrity check and was not loaded."""

    run_id: str | None = None
    task: str | None = None
    path: str | None = None

    def __init__(self, message: str, *, run_id: str | None = None, task: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.task = task
        self.path = path

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class RunError(RayOrchError):
    """The run went wrong at run time.

    ``results`` holds the outputs of every task that completed before the failure,
    so partial work is never lost.
    """

    task: str | None
    """The task the failure belongs to, if any."""
    results: dict[str, Any]
    """The outputs of every task that completed before the failure."""
    run_id: str | None = None
    """The run's id (set on the driver), to resume it or find its checkpoints."""
    original: BaseException | None = None
    """The user's own exception (from a guardrail or an ``execute()`` override), if any."""

    def __init__(self, message: str, *, task: str | None = None,
                 results: dict[str, Any] | None = None, run_id: str | None = None,
                 original: BaseException | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.results = results or {}
        self.run_id = run_id
        self.original = original

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class TaskFailedError(RunError):
    """A task exhausted its attempts (and its fallback agent, if any).

    ``attempt_log`` lists the model calls made (model, tokens, cost, outcome);
    ``tool_calls`` the tool calls (as ``TaskOutput.metadata["tool_calls"]``);
    ``retryable`` tells whether the last failure was one retrying might fix.
    """

    attempt_log: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    retryable: bool = False

    def __init__(self, message: str, *, task: str | None = None,
                 results: dict[str, Any] | None = None, run_id: str | None = None,
                 original: BaseException | None = None,
                 attempt_log: list[dict[str, Any]] | None = None,
                 tool_calls: list[dict[str, Any]] | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, task=task, results=results, run_id=run_id,
                         original=original)
        self.attempt_log = list(attempt_log or [])
        self.tool_calls = list(tool_calls or [])
        self.retryable = retryable


class OutputValidationError(TaskFailedError):
    """The reply never matched the task's ``output_json`` / ``output_pydantic`` schema."""


class GuardrailFailedError(TaskFailedError):
    """The task's guardrails rejected every attempt, or a guardrail raised (then at once,
    with no retry; ``guardrail`` names it and ``__cause__`` is its exception)."""

    guardrail: str | None = None

    def __init__(self, message: str, *, guardrail: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.guardrail = guardrail


class RateLimitError(TaskFailedError):
    """The provider rate-limited the task and asked (``Retry-After``) for a longer wait
    than the backoff cap (30 s) or the task's remaining ``timeout`` allows. The wait is
    never silently shortened: ``retry_after`` is the provider's requested wait in seconds,
    and ``__cause__`` the ``LLMError`` of the last call."""

    retry_after: float | None = None
    status_code: int | None = None

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status_code: int | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after
        self.status_code = status_code


class ContextBudgetError(TaskFailedError):
    """A task's context exceeds its token budget and its overflow policy is ``"fail"``."""


class ToolCallError(TaskFailedError):
    """A tool call failed (it raised, timed out, was unknown or got bad arguments) and
    the task runs with ``tool_errors="raise"``; retries and the fallback agent apply."""

    tool: str | None
    """The tool's name as the model called it."""
    arguments: dict[str, Any]
    """The arguments the model gave."""
    retryable: bool
    """Always True: another attempt may call the tool differently."""

    def __init__(self, message: str, *, task: str | None = None, tool: str | None = None,
                 arguments: dict[str, Any] | None = None) -> None:
        super().__init__(message, task=task)
        self.tool = tool
        self.arguments = dict(arguments or {})
        self.retryable = True


class ToolLoopError(TaskFailedError):
    """An attempt's model kept calling tools past ``max_tool_calls``."""

    tool: str | None
    """The tool called most in the attempt."""
    calls: int
    """How many tool calls the attempt had made or asked for."""

    def __init__(self, message: str, *, task: str | None = None, tool: str | None = None,
                 calls: int = 0) -> None:
        super().__init__(message, task=task)
        self.tool = tool
        self.calls = calls


class LLMError(RunError):
    """A model call failed. ``retryable`` tells whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True, status_code: int | None = None,
                 task: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, task=task)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class MCPSessionError(RunError):
    """An MCP server's session broke during a call (the server exited, the connection
    dropped), or the server cannot be started again; the model reads it as the tool's
    result, and the next call starts the server again (see ``tools/mcp_connection.py``)."""

    server: str | None
    """The server's name (``MCP(..., name=)``, default its command or URL)."""
    tool: str | None
    """The tool being called, if any."""

    def __init__(self, message: str, *, server: str | None = None, tool: str | None = None,
                 task: str | None = None) -> None:
        super().__init__(message, task=task)
        self.server = server
        self.tool = tool


class MCPToolError(RunError):
    """An MCP server refused a tool call or answered it with an error result; the
    session is fine."""

    server: str | None
    """The server's name."""
    tool: str | None
    """The tool called."""

    def __init__(self, message: str, *, server: str | None = None, tool: str | None = None,
                 task: str | None = None) -> None:
        super().__init__(message, task=task)
        self.server = server
        self.tool = tool


class TaskTimeoutError(RunError):
    """A task exceeded its ``timeout``."""


class CircuitOpenError(RunError):
    """A circuit breaker is open and the task was configured to raise."""


class DecisionError(RunError):
    """A decision's answer matched none of its routes and the condition has no default."""


class LoopLimitError(RunError):
    """A loop has more items than its ``max_iterations``."""


class StepLimitError(RunError):
    """A cycle exceeded a task's visit limit or the run's step limit."""


class BudgetExceededError(RunError):
    """The run's token or cost budget was reached; in-flight work finished first."""


class RunCancelledError(RunError):
    """The run was cancelled; completed results are kept in ``results``."""


class SupervisorLostError(RunError):
    """The run's Supervisor died mid-run (its process or node was lost), or a failure
    that is not a ray-orch error came back from it. ``run_id`` and ``results`` (what the
    driver had seen complete) are set; ``__cause__`` is Ray's or Python's exception."""


class RayOrchWarning(UserWarning):
    """A ray-orch warning: something accepted that has no effect, or works differently."""


def _rebuild(cls: type[Exception], message: str, state: dict[str, Any]) -> Exception:
    # Errors cross process boundaries (actor -> supervisor -> driver); keep their fields.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err
