"""ray-orch: orchestrate LLM agents on Ray.

Write driver scripts with ``Agent``, ``Task`` and ``Process``; the same script runs on a
laptop (a local Ray, an embedded offline model) or on a Ray cluster (``RAY_ADDRESS``).

Example:
    >>> from ray_orch import Agent, Task, Process
    >>> writer = Agent(role="Writer", goal="Write clearly")
    >>> tasks = {"draft": Task(description="Draft a haiku about Ray", agent=writer)}
    >>> # Process(tasks=tasks, agents=[writer]).sequential()["draft"].raw
"""

from ._agent import Agent
from ._analysis import MetricsCollector
from ._breaker import CircuitBreaker
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
    RayOrchError,
    ResumeError,
    RunCancelledError,
    RunError,
    SerializationError,
    StepLimitError,
    TaskFailedError,
    TaskTimeoutError,
    UnboundedCycleError,
    UnknownTaskError,
    WorkflowDefinitionError,
)
from ._output import GuardrailResult, TaskOutput
from ._pool import AgentPool
from ._process import Process
from ._task import Task
from ._visualize import visualize_workflow

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
    "RayOrchError",
    "ResumeError",
    "RunCancelledError",
    "RunError",
    "SerializationError",
    "StepLimitError",
    "Task",
    "TaskFailedError",
    "TaskOutput",
    "TaskTimeoutError",
    "UnboundedCycleError",
    "UnknownTaskError",
    "WorkflowDefinitionError",
    "visualize_workflow",
]
