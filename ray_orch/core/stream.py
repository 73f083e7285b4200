"""``StreamEvent``: what ``Process.stream()`` and ``astream()`` yield, one schema for
``sequential``, ``workflow`` and ``hierarchical`` runs, derived from the run's events
(``core/events.py``: ``StreamEvent`` is a ``RunEvent``, its kinds are ``StreamKind``, and
``STREAMED_AS`` says which event kind becomes which).

Kinds, in the order a run produces them:

| kind | when | fields beyond ``kind``, ``run_id``, ``workflow``, ``ts`` |
|---|---|---|
| ``run_started`` | the Supervisor took the run | ``data["tasks"]``, ``data["resumed"]`` |
| ``task_started`` | a member took a task (or a loop iteration) | ``task``, ``agent``, ``iteration`` |
| ``token`` | the model sent a piece of its answer (``stream(tokens=True)``) | ``task``, ``iteration``, ``text``, ``attempt`` |
| ``tool_progress`` | an MCP tool reported progress | ``task``, ``tool``, ``data`` (``progress``, ``total``, ``message``, ``call_id``) |
| ``tool_call`` | a tool call ended | ``task``, ``tool``, ``arguments``, ``data`` (ok, duration, where) |
| ``approval_requested`` | a task or tool call waits for a person | ``task``, ``tool``, ``arguments``, ``data["request"]`` |
| ``loop_iteration`` | one iteration of a loop task succeeded | ``task``, ``iteration``, ``output`` |
| ``task_retried`` | a task needed more than one attempt | ``task``, ``data["count"]`` |
| ``decision`` | a decision task chose a route | ``task``, ``route`` |
| ``task_completed`` | a task's output is final | ``task``, ``agent``, ``output`` |
| ``task_failed`` | a task failed (after its retries and fallback) | ``task``, ``error``, ``error_type`` |
| ``task_skipped`` | a task will not run (not routed to, upstream failed) | ``task``, ``error`` (the reason) |
| ``run_completed`` | the run ended well | ``results``: what ``workflow()`` returns |
| ``run_failed`` | the run failed or was cancelled | ``error``, ``error_type``, ``results`` (what completed) |

The ``token`` deltas of a task's successful attempt concatenate to its output's ``raw``;
a retried attempt's deltas carry a lower ``attempt`` number.

Example:
    >>> from ray_orch.core.events import Event
    >>> [e.kind for e in to_stream(Event(kind="decision", task="route", data={"route": "a"}))]
    ['decision']
    >>> to_stream(Event(kind="decision", task="route", data={"route": "a"}))[0].route
    'a'
"""

from __future__ import annotations

from typing import Any

from ray_orch.core.events import Event, RunEvent, StreamKind
from ray_orch.core.output import TaskOutput

__all__ = ["StreamEvent", "StreamKind", "to_stream"]


class StreamEvent(RunEvent):
    """One thing that happened in a run, as the driver sees it live (``kind``,
    ``run_id``, ``workflow``, ``task``, ``ts`` and ``data`` are ``RunEvent``'s)."""

    kind: StreamKind
    """What happened (see the table in this module's docstring)."""
    iteration: int | None = None
    """The loop iteration it concerns, if any."""
    agent: str | None = None
    """The role of the agent concerned, if any."""
    route: str | None = None
    """``decision``: the chosen condition key."""
    text: str | None = None
    """``token``: a piece of the model's answer."""
    attempt: int | None = None
    """``token``: which attempt of the task it belongs to (from 1)."""
    output: TaskOutput | None = None
    """``task_completed`` / ``loop_iteration``: the output."""
    results: dict[str, TaskOutput] | None = None
    """``run_completed`` / ``run_failed``: every completed task's output by name."""
    error: str | None = None
    """``task_failed`` / ``run_failed``: what went wrong; ``task_skipped``: why."""
    error_type: str | None = None
    """The error's type name (``TaskFailedError``, ...)."""
    tool: str | None = None
    """``tool_call`` / ``tool_progress`` / ``approval_requested``: the tool's name."""
    arguments: dict[str, Any] | None = None
    """``tool_call`` / ``approval_requested``: the call's arguments."""


def to_stream(event: Event) -> list[StreamEvent]:
    """The public events an internal ``Event`` stands for: of the kinds
    ``STREAMED_AS[event.kind]`` names (none for metrics-only kinds: model calls, gauges,
    cache and breaker states)."""
    base: dict[str, Any] = {"run_id": event.run_id, "workflow": event.workflow,
                            "task": event.task, "agent": event.agent_role, "ts": event.ts,
                            "iteration": event.data.get("iteration")}
    kind = event.kind
    if kind == "run_started":
        return [StreamEvent(kind="run_started", **base, data=dict(event.data))]
    if kind == "task_started":
        return [StreamEvent(kind="task_started", **base)]
    if kind == "task_finished":
        return _finished(event, base)
    if kind == "task_completed":
        raw = event.data.get("output")
        return [StreamEvent(kind="task_completed", **{**base, "iteration": None},
                            output=TaskOutput.model_validate(raw) if raw else None)]
    if kind == "retry":
        return [StreamEvent(kind="task_retried", **base,
                            data={"count": event.data.get("count", 0)})]
    if kind == "decision":
        route = event.data.get("route")
        return [StreamEvent(kind="decision", **base, route=route if isinstance(route, str)
                            else None)]
    if kind == "token":
        return [StreamEvent(kind="token", **base, text=str(event.data.get("text", "")),
                            attempt=event.data.get("attempt"))]
    if kind in ("tool_call", "tool_progress", "approval_requested"):
        return [StreamEvent(kind=kind, **base, tool=event.data.get("tool"),
                            arguments=event.data.get("arguments"),
                            data={k: v for k, v in event.data.items()
                                  if k not in ("tool", "arguments")})]
    return []


def _finished(event: Event, base: dict[str, Any]) -> list[StreamEvent]:
    raw = event.data.get("output")
    output = TaskOutput.model_validate(raw) if isinstance(raw, dict) else None
    if event.status == "completed":
        # A task's final output comes as ``task_completed`` (loops included), once.
        if base["iteration"] is None:
            return []
        return [StreamEvent(kind="loop_iteration", **base, output=output)]
    if event.status == "failed":
        return [StreamEvent(kind="task_failed", **base, error=event.data.get("error"),
                            error_type=event.outcome)]
    return []
