"""Events: the one schema of what happens in a run.

The Supervisor emits ``Event``s; the driver turns them into progress and into
``Process.metrics``, and the MetricsHub turns batches of them into Prometheus metrics.
Labels that reach Prometheus are bounded: workflow, task name, agent role, model,
status, outcome; never run ids or prompts (``run_id`` is carried for the driver only).

The public stream (``Process.stream()``, ``core/stream.py``) is derived from this
schema: ``StreamEvent`` shares ``RunEvent``'s fields, ``StreamKind`` lists its kinds, and
``STREAMED_AS`` says which stream kinds each event kind becomes (the driver adds
``DRIVER_KINDS`` when a run ends). A new kind is added here, once.

Example:
    >>> Event(kind="decision", task="route", data={"route": "a"}).task
    'route'
    >>> STREAMED_AS["retry"]
    ('task_retried',)
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["DRIVER_KINDS", "STREAMED_AS", "Event", "EventKind", "RunEvent", "StreamKind"]

EventKind = Literal[
    "run_started",      # data: {"tasks": int, "resumed": bool}
    "run_finished",     # status: completed|failed|cancelled
    "task_ready",       # a task's inputs are ready; it waits for an agent
    "task_started",     # an attempt was dispatched to a pool member
    "task_finished",    # status: completed|failed|skipped; duration_s; queue_s in data
    "attempt_failed",   # outcome: the error kind (rate_limit, timeout, server, invalid_output,
                        #   guardrail, error); a retry may follow
    "retry",            # a new attempt was scheduled after a failure; data: {"count"}
    "fallback",         # the fallback agent took over a task
    "llm_call",         # one model call: duration_s, tokens_*, cost_usd, outcome
    "tool_call",        # one tool call: outcome ok|error, duration_s; data: {"tool",
                        #   "arguments", "ok", "where", "replayed", "started", ...}
    "decision",         # data: {"route": str}
    "assignment",       # hierarchical: agent_role took task; data: {"by": manager|fallback}
    "cache",            # outcome: hit|miss
    "breaker",          # data: {"state": "closed"|"open"|"half_open", "breaker": name}
    "pool",             # data: {"in_flight": int, "queued": int, "size": int}
    "scheduler",        # data: {"running": int, "ready": int, "waiting": int}
    # Only while the driver streams the run (Process.stream) or has callbacks:
    "task_completed",   # a final output; data: {"output"}
    "token",            # data: {"text": str, "attempt": int, "iteration": int | None}
    "approval_requested",  # data: {"tool", "arguments", "request": {...}}
    "tool_progress",    # an MCP tool's progress notification; data: {"tool", "call_id",
                        #   "progress", "total", "message", "iteration"}
]

#: The kinds of the public stream (``StreamEvent.kind``; see ``core/stream.py``).
StreamKind = Literal[
    "run_started", "run_completed", "run_failed",
    "task_started", "task_completed", "task_failed", "task_retried", "task_skipped",
    "decision", "loop_iteration", "tool_call", "tool_progress", "token", "approval_requested",
]

#: Which stream kinds each event kind becomes (``core/stream.to_stream``). Kinds not
#: listed are for metrics and progress only: model calls, gauges, cache, breakers.
STREAMED_AS: dict[str, tuple[str, ...]] = {
    "run_started": ("run_started",),
    "task_started": ("task_started",),
    "task_finished": ("loop_iteration", "task_failed"),  # a final output: task_completed
    "task_completed": ("task_completed",),
    "retry": ("task_retried",),
    "decision": ("decision",),
    "token": ("token",),
    "tool_call": ("tool_call",),
    "tool_progress": ("tool_progress",),
    "approval_requested": ("approval_requested",),
}

#: Stream kinds the driver makes itself when the run ends (from its result).
DRIVER_KINDS: tuple[str, ...] = ("run_completed", "run_failed", "task_skipped")


class RunEvent(BaseModel):
    """What every event of a run has, internal (``Event``) or streamed (``StreamEvent``)."""

    kind: str
    """What happened (the subclass names the kinds)."""
    workflow: str = "workflow"
    """The process's name."""
    run_id: str = ""
    """The run's id (checkpoints, ``resume=``, ``ray-orch runs``)."""
    task: str | None = None
    """The task it concerns, if any."""
    ts: float = Field(default_factory=time.time)
    """When it happened (Unix time, where it happened)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Further details of the kind (stable keys are documented with each kind)."""


class Event(RunEvent):
    """One thing that happened in a run, as the Supervisor reports it."""

    kind: EventKind
    """What happened (``EventKind``)."""
    agent_role: str | None = None
    """The role of the agent concerned, if any."""
    model: str | None = None
    """``llm_call``: the model called."""
    status: str | None = None
    """``task_finished`` / ``run_finished``: how it ended."""
    outcome: str | None = None
    """``llm_call`` / ``tool_call`` / ``attempt_failed`` / ``cache``: the result's kind."""
    duration_s: float | None = None
    """How long it took, if it took time."""
    tokens_prompt: int = 0
    """``llm_call``: prompt tokens."""
    tokens_completion: int = 0
    """``llm_call``: completion tokens."""
    cost_usd: float = 0.0
    """``llm_call``: its price, when the model's is known."""
