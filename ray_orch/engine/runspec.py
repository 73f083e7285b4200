"""What a run is given and what it gives back: ``RunSpec``, pickled once by the driver
and opened by the Supervisor, and ``RunResult``, the driver's answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray_orch.core.output import TaskOutput
from ray_orch.engine.graph import Graph, Mode
from ray_orch.policy.task import Task

__all__ = ["RunResult", "RunSpec"]


@dataclass(kw_only=True)
class RunSpec:
    """Everything a Supervisor needs to run a process (pickled once, as one object)."""

    run_id: str
    workflow: str
    mode: Mode
    tasks: list[Task]
    """The run's tasks in definition order (the driver's are not changed by the run)."""
    agents: list[Any]
    graph: Graph | None = None
    """The tasks' graph, built and validated once, on the driver, and shipped with them
    (None: the run builds it from ``tasks``)."""
    default_agent: Any = None
    manager: Any = None
    max_visits: int = 10
    max_steps: int | None = None
    max_manager_calls: int | None = None
    on_failure: str = "fail"
    store: Any = None
    """The run's store handle (``RunStore``), shipped to the Supervisor, which passes it
    to the run in ``Services``; None: the run keeps no state."""
    resume: bool = False
    allow_drift: bool = False
    cache: bool = False
    budget_tokens: int | None = None
    budget_usd: float | None = None
    metrics: bool = True
    metrics_host: str | None = None
    metrics_port: int | None = None
    stream: bool = False
    """The driver streams the run: events go out at once, with outputs."""
    tokens: bool = False
    """Model calls stream their answers; members send the deltas as ``token`` events."""
    telemetry: dict[str, str] = field(default_factory=dict)
    """The driver's ``OTEL_*`` settings (tracing is on when they name an endpoint)."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """The driver's trace context (W3C ``traceparent``), the parent of the run's spans."""
    approvals: str | None = None
    """How the run asks a person: ``"inline"`` (the driver answers) or ``"pause"``."""
    answers: dict[str, Any] = field(default_factory=dict)
    """Answers to the pending requests of the run being resumed, by request id."""
    memory: Any = None
    """The run's memory settings (``policy.recall.MemoryPlan``: its run id set), or None."""
    definitions: bytes | None = None
    """What the user defined, pickled once by the driver: ``tasks``, ``graph``,
    ``agents``, ``default_agent`` and ``manager`` travel in it (not beside it). The
    Supervisor opens it (``open_definitions``) and binds its members with these very
    bytes, so the tasks are not pickled again per member."""

    def open_definitions(self, loads: Callable[[bytes], Any]) -> None:
        """Fill ``tasks``, ``graph``, ``agents``, ``default_agent`` and ``manager`` from
        ``definitions`` (nothing to do without it, or once filled)."""
        if self.definitions is not None and self.graph is None:
            (self.tasks, self.graph, self.agents, self.default_agent,
             self.manager) = loads(self.definitions)


@dataclass(kw_only=True)
class RunResult:
    """What the driver gets back."""

    run_id: str
    outputs: dict[str, TaskOutput]
    statuses: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    resumed: list[str] = field(default_factory=list)
    metrics_url: str | None = None
    activated_by: dict[str, str | None] = field(default_factory=dict)
