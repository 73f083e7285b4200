"""ray-orch: orchestrate LLM agents on Ray.

Write driver scripts with ``Agent``, ``Task`` and ``Process``; the same script runs on a
laptop (a local Ray, an embedded offline model) or on a Ray cluster (``RAY_ADDRESS``).

Example:
    >>> from ray_orch import Agent, Task, Process
    >>> writer = Agent(role="Writer", goal="Write clearly")
    >>> tasks = {"draft": Task(description="Draft a haiku about Ray", agent=writer)}
    >>> # Process(tasks=tasks, agents=[writer]).sequential()["draft"].raw
"""

import importlib
import typing

from ._errors import (
    BudgetExceededError,
    CheckpointCorruptError,
    CircuitOpenError,
    ContextBudgetError,
    DecisionError,
    DuplicateTaskError,
    GuardrailFailedError,
    InvalidTaskFieldError,
    LLMError,
    LoopDataError,
    LoopLimitError,
    MissingAgentError,
    ModelNotConfiguredError,
    OutputValidationError,
    RateLimitError,
    RayOrchError,
    RayOrchWarning,
    ResumeError,
    RunCancelledError,
    RunError,
    SerializationError,
    StepLimitError,
    SupervisorLostError,
    TaskFailedError,
    TaskTimeoutError,
    UnboundedCycleError,
    UnknownKeywordError,
    UnknownTaskError,
    WorkflowDefinitionError,
)

if typing.TYPE_CHECKING:
    from ._agent import Agent
    from ._analysis import MetricsCollector
    from ._breaker import CircuitBreaker
    from ._output import GuardrailResult, TaskOutput
    from ._pool import AgentPool
    from ._process import Process
    from ._task import Task
    from ._visualize import visualize_workflow

# Names from the heavier modules load on first use: an agent actor unpickles an Agent and
# a Task and needs nothing of the driver's side (Process, the run engine, analysis).
_LAZY = {
    "Agent": "_agent",
    "AgentPool": "_pool",
    "CircuitBreaker": "_breaker",
    "GuardrailResult": "_output",
    "MetricsCollector": "_analysis",
    "Process": "_process",
    "Task": "_task",
    "TaskOutput": "_output",
    "visualize_workflow": "_visualize",
}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ray_orch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentPool",
    "BudgetExceededError",
    "CheckpointCorruptError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ContextBudgetError",
    "DecisionError",
    "DuplicateTaskError",
    "GuardrailFailedError",
    "GuardrailResult",
    "InvalidTaskFieldError",
    "LLMError",
    "LoopDataError",
    "LoopLimitError",
    "MetricsCollector",
    "MissingAgentError",
    "ModelNotConfiguredError",
    "OutputValidationError",
    "Process",
    "RateLimitError",
    "RayOrchError",
    "RayOrchWarning",
    "ResumeError",
    "RunCancelledError",
    "RunError",
    "SerializationError",
    "StepLimitError",
    "SupervisorLostError",
    "Task",
    "TaskFailedError",
    "TaskOutput",
    "TaskTimeoutError",
    "UnboundedCycleError",
    "UnknownKeywordError",
    "UnknownTaskError",
    "WorkflowDefinitionError",
    "visualize_workflow",
]
