"""Approvals in a run: a task's output (``human_input=True``) or a tool call
(``requires_approval``) waits for a person before anything downstream starts.

Inline (a handler on the driver, or its console): the request goes to the driver as an
``approval_requested`` event and the branch waits, holding no member slot, for
``answer()``; other branches go on. A run interrupted while outputs wait (Ctrl-C, a
cancel) keeps their requests in its store (``unanswered``), so that the run resumed
asks the same questions again without running those tasks again. Paused (no one to ask, a checkpoint store): the
request is written to the store and the branch stops; when nothing else can run the run
ends ``paused`` (``RunPaused``), and a later run resumed with ``answers=`` continues
without running anything that had completed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ray_orch.core.approvals import (
    Answer,
    ApprovalRequest,
    Edit,
    Reject,
    answer_of,
    parse_answer,
)
from ray_orch.core.output import TaskOutput
from ray_orch.engine.scheduler import Dispatch

__all__ = ["Approvals", "Waiting", "edited", "record"]

Mode = Literal["inline", "pause"]


@dataclass(kw_only=True, eq=False)
class Waiting:
    """A branch waiting for an answer."""

    request: ApprovalRequest
    dispatch: Dispatch
    role: str | None
    output: TaskOutput


@dataclass(kw_only=True)
class Approvals:
    """The run's questions to a person and the answers it has.

    Args:
        mode: ``"inline"`` or ``"pause"`` (None: the run asks nothing).
        run_id: the run's id.
        store: the ``PauseStore`` (pause mode, and on resume).
        emit: the run's event emitter.
    """

    mode: Mode | None
    run_id: str
    store: Any = None
    emit: Callable[..., None] = lambda *a, **k: None
    waiting: dict[asyncio.Future[Any], Waiting] = field(default_factory=dict)
    futures: dict[str, asyncio.Future[Answer]] = field(default_factory=dict)
    paused: list[ApprovalRequest] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    feedback: dict[str, str] = field(default_factory=dict)
    """Reasons of rejections, by task: the task's next attempt hears it."""
    fail: dict[str, str] = field(default_factory=dict)
    """Tasks rejected with ``on_reject="fail"`` on resume, with the reason."""
    again: dict[tuple[str, int], ApprovalRequest] = field(default_factory=dict)
    """Requests still pending on resume: asked again without running the task."""
    tool_requests: int = 0
    """Tool calls waiting for an answer now."""

    def resume(self, answers: dict[str, Any], restore: Callable[[str, int, TaskOutput], None],
               tasks: dict[str, Any]) -> None:
        """Apply ``answers`` to the requests the store holds for this run: an approved
        or edited output becomes the task's (``restore``), a rejection goes back to the
        task or fails it, an unanswered request is asked again."""
        if self.store is None:
            return
        self.store.unpause(self.run_id)
        for data in self.store.pending(self.run_id):
            request = ApprovalRequest.from_dict(data)
            if request.id not in answers:
                self.again[(request.task, request.visit)] = request
                continue
            answer = parse_answer(answers[request.id])
            self.store.answer(self.run_id, request.id, answer_of(answer))
            task = tasks[request.task]
            if isinstance(answer, Reject):
                if getattr(task, "on_reject", "retry") == "fail":
                    self.fail[request.task] = answer.reason
                else:
                    self.feedback[request.task] = answer.reason
                continue
            assert request.output is not None
            output = edited(task, request.output, answer) if isinstance(answer, Edit) \
                else request.output
            output.metadata["approval"] = record(request, answer)
            restore(request.task, request.visit, output)

    def needs(self, task: Any, dispatch: Dispatch, output: TaskOutput) -> bool:
        """Whether this output waits for a person."""
        return (self.mode is not None and bool(getattr(task, "human_input", False))
                and dispatch.iteration is None and "approval" not in output.metadata)

    def ask(self, dispatch: Dispatch, role: str | None, output: TaskOutput
            ) -> asyncio.Future[Answer] | None:
        """Ask about ``output``; inline, the future of its answer (the caller waits for it
        as a job of the run); paused, None (the request is stored)."""
        request = self.again.pop((dispatch.task, dispatch.visit), None) or ApprovalRequest(
            run_id=self.run_id, task=dispatch.task, visit=dispatch.visit, output=output)
        self.emit("approval_requested", task=dispatch.task, agent_role=role,
                  data={"request": request.to_dict()})
        if self.mode == "pause":
            self.store.ask(self.run_id, request.to_dict())
            self.paused.append(request)
            return None
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.futures[request.id] = future
        self.waiting[future] = Waiting(request=request, dispatch=dispatch, role=role,
                                       output=output)
        return future

    async def ask_tool(self, task: str, tool: str, arguments: dict[str, Any],
                       role: str | None = None) -> dict[str, Any]:
        """Ask about a tool call (inline): the answer as data (``answer_of``). A run that
        cannot ask inline refuses the call, saying why (the model hears it)."""
        if self.mode != "inline":
            return {"answer": "reject", "reason": "no one can approve this call while the "
                    "run runs (give Process(approval_handler=...) or run on a terminal)"}
        request = ApprovalRequest(run_id=self.run_id, task=task, tool=tool,
                                  arguments=dict(arguments))
        self.emit("approval_requested", task=task, agent_role=role,
                  data={"request": request.to_dict(), "tool": tool, "arguments": arguments})
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.futures[request.id] = future
        self.tool_requests += 1
        try:
            answer = await future
        finally:
            self.tool_requests -= 1
        return {**answer_of(answer), "request_id": request.id}

    def answer(self, request_id: str, answer: Any) -> bool:
        """The driver's answer to an inline request; False if no such request waits. With
        a store, the answer is recorded there too (a request kept by an interrupted run is
        no longer pending)."""
        future = self.futures.pop(request_id, None)
        if future is None or future.done():
            return False
        parsed = parse_answer(answer)
        if self.store is not None:
            self.store.answer(self.run_id, request_id, answer_of(parsed))
        future.set_result(parsed)
        return True

    def unanswered(self) -> list[asyncio.Future[Any]]:
        """The run ends (Ctrl-C, a cancel, a failure elsewhere) while outputs still wait:
        their requests are kept in the store, as a paused run's are, so that the run
        resumed asks them again (same request ids) without running their tasks again.
        Returns the waiting jobs, for the run to cancel."""
        if self.store is not None:
            for waiting in self.waiting.values():
                self.store.ask(self.run_id, waiting.request.to_dict())
        return list(self.waiting)


def record(request: ApprovalRequest, answer: Answer) -> dict[str, Any]:
    """What the task's metadata keeps of an answer: who, when, what."""
    return {**answer_of(answer), "request_id": request.id, "at": time.time()}


def edited(task: Any, output: TaskOutput, answer: Edit) -> TaskOutput:
    """``output`` as the person edited it: new text, or new structured fields."""
    value = answer.value
    new = output.model_copy(deep=True)
    schema = task.output_schema() if hasattr(task, "output_schema") else None
    if isinstance(value, dict):
        if schema is not None:
            parsed = schema.model_validate(value)
            new.pydantic, new.json_dict = parsed, parsed.model_dump(mode="json")
            new.raw = parsed.model_dump_json()
        else:
            new.json_dict = dict(value)
            new.raw = str(value)
        return new
    new.raw = str(value)
    if schema is not None:
        parsed = schema.model_validate_json(new.raw)
        new.pydantic, new.json_dict = parsed, parsed.model_dump(mode="json")
    return new
