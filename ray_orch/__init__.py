"""ray-orch: orchestrate LLM agents on Ray.

Write driver scripts with ``Agent``, ``Task`` and ``Process``; the same script runs on a
laptop (a local Ray, an embedded offline model) or on a Ray cluster (``RAY_ADDRESS``).

Example:
    >>> from ray_orch import Agent, Task, Process
    >>> from ray_orch.testing import StubLLMServer
    >>> with StubLLMServer(reply="Actors hum in pools") as model:
    ...     writer = Agent(role="Writer", goal="Write clearly", llm=model.llm)
    ...     tasks = {"draft": Task(description="Draft a haiku about Ray", agent=writer)}
    ...     Process(tasks=tasks, agents=[writer]).sequential()["draft"].raw
    'Actors hum in pools'
"""

import importlib
import typing

from ray_orch.core.errors import (
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
    MCPSessionError,
    MCPToolError,
    MissingAgentError,
    MissingAPIKeyError,
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
    StoreError,
    StoreIntegrityError,
    SupervisorLostError,
    TaskFailedError,
    TaskTimeoutError,
    ToolCallError,
    ToolDefinitionError,
    ToolLoopError,
    UnboundedCycleError,
    UnknownKeywordError,
    UnknownTaskError,
    WorkflowDefinitionError,
)

if typing.TYPE_CHECKING:
    from ray_orch.api.driver import RunDriver
    from ray_orch.api.pool import AgentPool
    from ray_orch.api.process import Process
    from ray_orch.api.team import Agents, AgentTeam, PraisonAIAgents
    from ray_orch.core.approvals import (
        ApprovalError,
        ApprovalRequest,
        Approve,
        Edit,
        Reject,
        RunPaused,
    )
    from ray_orch.core.output import GuardrailResult, TaskOutput
    from ray_orch.core.stream import StreamEvent
    from ray_orch.observe.analysis import MetricsCollector
    from ray_orch.observe.visualize import visualize_workflow
    from ray_orch.policy.agent import Agent
    from ray_orch.policy.breaker import CircuitBreaker
    from ray_orch.policy.memory import Memory
    from ray_orch.policy.praison import MultiAgentHooksConfig, PraisonCompatWarning
    from ray_orch.policy.task import Task
    from ray_orch.store.memory import MemoryItem
    from ray_orch.tools import MCP, tool

# Names from the heavier modules load on first use: an agent actor unpickles an Agent and
# a Task and needs nothing of the driver's side (Process, the run engine, analysis).
_LAZY = {
    "Agent": "policy.agent",
    "AgentPool": "api.pool",
    "AgentTeam": "api.team",
    "ApprovalError": "core.approvals",
    "ApprovalRequest": "core.approvals",
    "Approve": "core.approvals",
    "Edit": "core.approvals",
    "Reject": "core.approvals",
    "RunPaused": "core.approvals",
    "Agents": "api.team",
    "CircuitBreaker": "policy.breaker",
    "GuardrailResult": "core.output",
    "MCP": "tools",
    "Memory": "policy.memory",
    "MemoryItem": "store.memory",
    "MetricsCollector": "observe.analysis",
    "MultiAgentHooksConfig": "policy.praison",
    "PraisonAIAgents": "api.team",
    "PraisonCompatWarning": "policy.praison",
    "Process": "api.process",
    "RunDriver": "api.driver",
    "StreamEvent": "core.stream",
    "Task": "policy.task",
    "TaskOutput": "core.output",
    "tool": "tools",
    "visualize_workflow": "observe.visualize",
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

__all__ = [  # noqa: RUF022 - plain sorted() order, as test_public_api checks
    "Agent",
    "AgentPool",
    "AgentTeam",
    "Agents",
    "ApprovalError",
    "ApprovalRequest",
    "Approve",
    "BudgetExceededError",
    "CheckpointCorruptError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ContextBudgetError",
    "DecisionError",
    "DuplicateTaskError",
    "Edit",
    "GuardrailFailedError",
    "GuardrailResult",
    "InvalidTaskFieldError",
    "LLMError",
    "LoopDataError",
    "LoopLimitError",
    "MCP",
    "MCPSessionError",
    "MCPToolError",
    "Memory",
    "MemoryItem",
    "MetricsCollector",
    "MissingAPIKeyError",
    "MissingAgentError",
    "ModelNotConfiguredError",
    "MultiAgentHooksConfig",
    "OutputValidationError",
    "PraisonAIAgents",
    "PraisonCompatWarning",
    "Process",
    "RateLimitError",
    "RayOrchError",
    "RayOrchWarning",
    "Reject",
    "ResumeError",
    "RunCancelledError",
    "RunDriver",
    "RunError",
    "RunPaused",
    "SerializationError",
    "StepLimitError",
    "StoreError",
    "StoreIntegrityError",
    "StreamEvent",
    "SupervisorLostError",
    "Task",
    "TaskFailedError",
    "TaskOutput",
    "TaskTimeoutError",
    "ToolCallError",
    "ToolDefinitionError",
    "ToolLoopError",
    "UnboundedCycleError",
    "UnknownKeywordError",
    "UnknownTaskError",
    "WorkflowDefinitionError",
    "tool",
    "visualize_workflow",
]
