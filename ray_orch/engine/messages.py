"""The records that cross the actor boundary: what the engine sends to members, the
registry and the run's listener, and what members send back to the listener.

Every call between the engine and an actor takes one of these (or at most three plain
values): ``member.run.remote(AttemptRequest(...))``, not ten positional arguments. Each
record is a kw-only dataclass, so a field added later breaks no caller, and it pickles
as one object.

Example:
    >>> binding = Binding(run_id="r1", agents={}, tasks={})
    >>> request = AttemptRequest(run_id="r1", agent_key="a", task_name="draft", bind=binding)
    >>> request.context, request.bind.prewarm
    ({}, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray_orch.core.output import TaskOutput
from ray_orch.core.shared import SharedServices

__all__ = ["AttemptRequest", "BatchRequest", "Binding", "HandOffRequest", "LeaseRequest",
           "Question", "RunOptions", "TaskRequest", "TokenBatch", "ToolQuestion"]


@dataclass(kw_only=True)
class RunOptions:
    """What a run asks of every member it binds, beside its agents and tasks."""

    listener: Any = None
    """Where live events go (the run's Supervisor, a ``Listener``:
    ``listener.push.remote(TokenBatch(...))``)."""
    tokens: bool = False
    """Stream model answers and send each piece as a ``token`` event."""
    telemetry: dict[str, str] = field(default_factory=dict)
    """The driver's ``OTEL_*`` settings (tracing is on when they name an endpoint)."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """The run's trace context, the parent of this member's spans."""
    approvals: bool = False
    """A person answers this run's approval requests inline (tool calls may ask)."""
    tool_journal: Any = None
    """Where this run's completed tool calls are journaled (``tools.journal``'s
    ``ToolJournalRef``; None: the run has no checkpoints)."""
    route_descriptions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per decision task: what each route leads to (the run's ``Graph``)."""
    memory: Any = None
    """The run's memory settings (``policy.recall.MemoryPlan``), or None."""
    shared: SharedServices | None = None
    """The cluster's shared services (breakers, rate limits, the embedded model's and the
    sentence encoder's node servers, MCP sessions) this run's attempts use; None: each member keeps them in its
    own process."""
    reply_line: str | None = None
    """The Supervisor's line (``ray_orch.core.line``): a member sends a copy of each
    output whose request has a ``reply`` key there as well (None: no copies)."""


@dataclass(kw_only=True)
class Binding:
    """A run's agents and tasks for a member (``member.bind``), sent with its first call
    of the run."""

    run_id: str
    """The run's key on members (its members key: unique per run)."""
    agents: dict[str, Any]
    """The run's agents, by agent key."""
    tasks: dict[str, Any] | bytes
    """The run's tasks, by name; or the run's definitions as the driver pickled them
    (``RunSpec.definitions``, not pickled again), which the member unpickles itself."""
    prewarm: bool | str = True
    """Start importing litellm now (True), return once it is imported (``"wait"``), or
    not (False: a standing ``AgentPool`` keeps an idle member small)."""
    options: RunOptions | None = None
    """What the run asks of its members (tokens, tracing, approvals)."""


@dataclass(kw_only=True)
class AttemptRequest:
    """One task to run (all its attempts) on a member: ``member.run``."""

    run_id: str
    """The run's members key."""
    agent_key: str
    """Which of the run's agents runs it."""
    task_name: str
    """The task, by name (bound with the run)."""
    inputs: dict[str, Any] | None = None
    """Values for the description's ``{placeholders}`` (a loop item's, or the run's)."""
    context: dict[str, TaskOutput] = field(default_factory=dict)
    """Outputs of the tasks it reads, in the order it lists them."""
    missing: dict[str, str] = field(default_factory=dict)
    """Context tasks that produced nothing, with why."""
    iteration: int | None = None
    """The loop iteration this run is, if any."""
    token: str | None = None
    """This send's hand-off token: a ``run_after`` of it here follows its output."""
    bind: Binding | None = None
    """The run's binding, carried by a member's first call of the run."""
    feedback: str | None = None
    """A person's feedback on an earlier answer, to take into account."""
    reply: str | None = None
    """The key of this send's output copy on the run's ``reply_line`` (None: no copy)."""
    start: str | None = None
    """The key of this call's copy on the member's line: the attempt begins with the
    first of the two, once (``engine/starts.py``)."""


@dataclass(kw_only=True)
class BatchRequest:
    """Many tasks at once on one member (loop iterations): ``member.run_many``."""

    run_id: str
    """The run's members key."""
    agent_key: str
    """Which of the run's agents runs them."""
    batch: int
    """The batch's number (``cancel_one`` names an item by batch and index)."""
    items: list[AttemptRequest]
    """The tasks, in index order."""
    bind: Binding | None = None
    """The run's binding, carried by a member's first call of the run."""


@dataclass(kw_only=True)
class HandOffRequest:
    """A task queued on a member behind another's run: ``member.run_after``."""

    after: str
    """The token of the run it follows (here, or on a member that forwards it)."""
    attempt: AttemptRequest
    """The task to run once ``after`` succeeded (its context lacks that output)."""
    order: list[str] | None = None
    """The task's context names in the order it lists them."""


@dataclass(kw_only=True)
class Question:
    """One plain model call as an agent (the hierarchical manager): ``member.ask``."""

    agent_key: str
    """Which agent answers."""
    prompt: str
    """What it is asked."""
    schema: dict[str, Any] | None = None
    """The JSON schema of the answer, if structured."""
    run_id: str | None = None
    """The run whose agent it is (the call waits for that run's binding)."""
    bind: Binding | None = None
    """The run's binding, carried by a member's first call of the run."""


@dataclass(kw_only=True)
class TaskRequest:
    """A task that travels with its call (the public ``AgentPool``): ``member.run_task``."""

    agent_key: str
    """Which bound agent runs it."""
    task: Any
    """The ``Task`` itself."""
    inputs: dict[str, Any] | None = None
    """Values for its description's ``{placeholders}``."""
    context: dict[str, TaskOutput] = field(default_factory=dict)
    """Outputs it reads."""
    run_id: str | None = None
    """The pool's binding (its ``RunOptions`` hold for the task), if any."""


@dataclass(kw_only=True)
class LeaseRequest:
    """Members wanted from the registry: ``registry.lease``."""

    placement_key: str
    """The placement's key (``placement_options``): members with it are interchangeable."""
    count: int
    """How many members."""
    options: dict[str, Any] = field(default_factory=dict)
    """Ray actor options for members started for it."""
    agent_key: str | None = None
    """The agent they will serve: members that served it lately come first."""
    lessee: str | None = None
    """Who leases them (a Supervisor's actor id): reclaimed if it is lost."""


@dataclass(kw_only=True)
class TokenBatch:
    """Token events a member sends its run's listener: ``listener.push``."""

    run_id: str
    """The run's members key (a batch of a run that ended is dropped)."""
    member: str
    """The sending member's id."""
    number: int
    """The batch's number from this member in this run, from 0: the listener delivers
    them in this order (calls to an async actor may run in any order)."""
    events: list[dict[str, Any]]
    """The events: ``{"task", "ts", "data"}`` each."""


@dataclass(kw_only=True)
class ToolQuestion:
    """A member asks whether a tool call may run: ``listener.ask_tool``."""

    run_id: str
    """The run's members key."""
    task: str
    """The task whose attempt calls the tool."""
    tool: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The call's arguments."""
