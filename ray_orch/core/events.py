"""Events: what the supervisor reports while a run goes on.

The Supervisor emits ``Event``s; the driver turns them into progress and into
``Process.metrics``, and the MetricsHub turns batches of them into Prometheus metrics.
Labels that reach Prometheus are bounded: workflow, task name, agent role, model,
status, outcome; never run ids or prompts (``run_id`` is carried for the driver only).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

EventKind = Literal[
    "run_started",      # data: {"tasks": int}
    "run_finished",     # status: completed|failed|cancelled
    "task_ready",       # a task's inputs are ready; it waits for an agent
    "task_started",     # an attempt was dispatched to a pool member
    "task_finished",    # status: completed|failed|skipped; duration_s; queue_s in data
    "attempt_failed",   # outcome: the error kind (rate_limit, timeout, server, invalid_output,
                        #   guardrail, error); a retry may follow
    "retry",            # a new attempt was scheduled after a failure
    "fallback",         # the fallback agent took over a task
    "llm_call",         # one model call: duration_s, tokens_*, cost_usd, outcome
    "tool_call",        # one tool call: outcome ok|error, duration_s; data: {"tool", "where",
                        #   "replayed", "started"}
    "decision",         # data: {"route": str}
    "assignment",       # hierarchical: agent_role took task; data: {"by": manager|fallback}
    "cache",            # outcome: hit|miss
    "breaker",          # data: {"state": "closed"|"open"|"half_open", "breaker": name}
    "pool",             # data: {"in_flight": int, "queued": int, "size": int}
    "scheduler",        # data: {"running": int, "ready": int, "waiting": int}
    # Only while the driver streams the run (Process.stream): see core/stream.py.
    "task_completed",   # a final output, when streamed or for a callback; data: {"output"}
    "token",            # data: {"text": str, "attempt": int, "iteration": int | None}
    "tool_call",        # data: {"tool", "arguments", "ok", "duration_s", "where", ...}
    "approval_requested",  # data: {"tool", "arguments", "request": {...}}
    "tool_progress",    # an MCP tool's progress notification; data: {"tool", "call_id",
                        #   "progress", "total", "message", "iteration"}
]


class Event(BaseModel):
    """One thing that happened in a run."""

    kind: EventKind
    workflow: str = "workflow"
    run_id: str = ""
    task: str | None = None
    agent_role: str | None = None
    model: str | None = None
    status: str | None = None
    outcome: str | None = None
    duration_s: float | None = None
    tokens_prompt: int = 0
    tokens_completion: int = 0
    cost_usd: float = 0.0
    ts: float = Field(default_factory=time.time)
    data: dict[str, Any] = Field(default_factory=dict)
