"""Human in the loop: what a run asks a person, and the answers it takes.

A task with ``human_input=True`` asks after its output and before its dependants start.
The answer is one of:

- ``Approve()``: the output stands;
- ``Edit(value)``: the output becomes ``value`` (text, or a dict for structured output);
- ``Reject(reason)``: the task is asked again with ``reason`` as feedback (within its
  retry budget), or fails, per ``Task(on_reject="retry" | "fail")``.

Example:
    >>> answer_of(Edit("Shorter, please"))
    {'answer': 'edit', 'value': 'Shorter, please', 'by': None}
    >>> parse_answer({"answer": "reject", "reason": "too long"})
    Reject(reason='too long', by=None)
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ray_orch.core.errors import ResumeError, RunError
from ray_orch.core.output import TaskOutput

__all__ = ["Answer", "ApprovalError", "ApprovalRequest", "Approve", "Edit", "Reject",
           "RunPaused", "answer_of", "edit_from_text", "parse_answer"]


@dataclass(frozen=True)
class Approve:
    """Let the output (or the tool call) stand."""

    by: str | None = None
    """Who answered (a name, ``"console"``, ``"cli"``)."""


@dataclass(frozen=True)
class Edit:
    """Replace the output (text, or a dict for structured output) or a tool call's
    arguments (a dict)."""

    value: Any
    """The new output, or the new arguments."""
    by: str | None = None
    """Who answered."""


@dataclass(frozen=True)
class Reject:
    """Refuse: the task is asked again with ``reason`` as feedback (or fails); a tool
    call returns ``reason`` to the model as its result."""

    reason: str = "rejected"
    """Why: fed back to the model."""
    by: str | None = None
    """Who answered."""


Answer = Approve | Edit | Reject


@dataclass(kw_only=True)
class ApprovalRequest:
    """What a run asks a person."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """The request's id: the key of ``answers={...}`` and ``ray-orch approve``."""
    run_id: str = ""
    """The run that asks."""
    task: str
    """The task that asks."""
    visit: int = 1
    """Which visit of the task (a task in a cycle may ask again)."""
    output: TaskOutput | None = None
    """The task's output to approve (``human_input``)."""
    tool: str | None = None
    """The tool whose call needs approval (``@tool(requires_approval=True)``)."""
    arguments: dict[str, Any] | None = None
    """That call's arguments."""
    asked_at: float = field(default_factory=time.time)
    """When it was asked (Unix time)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the journal, events and the command line)."""
        data = asdict(self)
        data["output"] = self.output.model_dump(mode="json") if self.output else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalRequest:
        """The request ``to_dict`` described."""
        values = dict(data)
        if values.get("output") is not None:
            values["output"] = TaskOutput.model_validate(values["output"])
        return cls(**values)


def answer_of(answer: Answer) -> dict[str, Any]:
    """An answer as plain data (recorded with the task's metadata and in the journal)."""
    if isinstance(answer, Approve):
        return {"answer": "approve", "by": answer.by}
    if isinstance(answer, Edit):
        return {"answer": "edit", "value": answer.value, "by": answer.by}
    return {"answer": "reject", "reason": answer.reason, "by": answer.by}


def edit_from_text(text: str, *, by: str | None = None) -> Edit:
    """An edit as a person types it (``ray-orch approve --edit``, the viewer's box): a
    JSON object becomes that object (a structured output), anything else stays text.

    Example:
        >>> edit_from_text('{"category": "billing"}', by="cli").value
        {'category': 'billing'}
        >>> edit_from_text("[1, 2]").value, edit_from_text("Dear Ana,").value
        ('[1, 2]', 'Dear Ana,')
    """
    try:
        value = json.loads(text)
    except ValueError:
        return Edit(text, by=by)
    return Edit(value if isinstance(value, dict) else text, by=by)


def parse_answer(data: Any) -> Answer:
    """The answer ``answer_of`` described; any other value is an ``ApprovalError``."""
    if isinstance(data, (Approve, Edit, Reject)):
        return data
    kind = data.get("answer") if isinstance(data, dict) else None
    if kind == "approve":
        return Approve(by=data.get("by"))
    if kind == "edit":
        return Edit(data.get("value"), by=data.get("by"))
    if kind == "reject":
        return Reject(str(data.get("reason") or "rejected"), by=data.get("by"))
    raise ApprovalError(f"an answer must be Approve(), Edit(value) or Reject(reason), "
                        f"not {data!r}", field="answers")


class ApprovalError(ResumeError):
    """An answer names no pending request, or is not an ``Approve``/``Edit``/``Reject``,
    or a run that asks for approval has no way to ask."""

    def __init__(self, message: str, *, task: str | None = None, field: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.field = field
        self.request_id = request_id


class RunPaused(RunError):
    """The run waits for a person: ``requests`` are pending, written to the checkpoint
    store. Continue it, from this process or another, with
    ``process.workflow(resume=run_id, answers={request.id: Approve() | Edit(...) |
    Reject(...)})`` or ``ray-orch approve RUN REQUEST``."""

    def __init__(self, message: str, *, run_id: str, requests: list[ApprovalRequest],
                 results: dict[str, Any] | None = None) -> None:
        super().__init__(message, results=results)
        self.run_id = run_id
        self.requests = requests
