"""The driver's side of approvals: who answers, checking answers, continuing a paused run.

``Process(approval_handler=fn)`` answers each ``ApprovalRequest`` in this process (``fn``
may be sync or async); without one, on a terminal, the console asks; otherwise the run
pauses in its checkpoint store (``RunPaused``), to be continued with
``workflow(resume=run_id, answers={...})`` from any process, or ``ray-orch approve``
(``cli/runs.py``, from the run store alone).

Approvals have one module per layer: ``core/approvals.py`` (the requests and answers),
``store/approvals.py`` (paused runs' requests in the run store), ``engine/approvals.py``
(waiting inside a run) and this one (the driver's side).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ray_orch.core.approvals import (
    Answer,
    ApprovalError,
    ApprovalRequest,
    Approve,
    Edit,
    Reject,
    answer_of,
    parse_answer,
)
from ray_orch.core.sync import in_daemon_thread

__all__ = ["Asker", "approval_mode", "check_answers", "console_handler"]


class Asking(Protocol):
    """What approvals read of a ``Process`` (typed here, so that this module does not
    import the Process that imports it)."""

    @property
    def task_list(self) -> list[Any]: ...
    @property
    def approval_handler(self) -> Callable[[ApprovalRequest], Any] | None: ...
    @property
    def store(self) -> str | None: ...


def approval_mode(process: Asking) -> str | None:
    """How a run of ``process`` asks a person: ``"inline"``, ``"pause"`` or None (it has
    nothing to ask).

    Raises:
        ApprovalError: it has something to ask and no way to: no handler, no terminal,
            no checkpoint store.
    """
    asking = [t.id for t in process.task_list if getattr(t, "human_input", False)]
    tools = [t.id for t in process.task_list if _asks_about_tools(t)]
    if not asking and not tools:
        return None
    if process.approval_handler is not None or _on_a_terminal():
        return "inline"
    if process.store and asking:
        return "pause"  # a tool call that asks then hears that no one can answer now
    asking = asking or tools
    raise ApprovalError(
        f"task '{asking[0]}' asks a person (human_input=True, or a tool with "
        "requires_approval=True) but the run has no way to "
        "ask: give Process(approval_handler=...), run it on a terminal, or give "
        "Process(checkpoint_dir=...) or store= so that it pauses", task=asking[0],
        field="human_input")


def _asks_about_tools(task: Any) -> bool:
    from ray_orch.tools.spec import combined_tools, tool_options

    agents = [getattr(task, "agent", None), getattr(task, "fallback_agent", None)]
    return any(tool_options(item).requires_approval
               for agent in agents for item in combined_tools(agent, task))


def _on_a_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def check_answers(process: Asking, run_id: str | None, answers: Any,
                  store: Any = None) -> dict[str, Any]:
    """``answers=`` of a resumed run, checked against the requests it has pending.

    Returns:
        The answers as plain data, by request id.

    Raises:
        ApprovalError: not a dict; an id no pending request has; an answer that is not
            ``Approve()``, ``Edit(...)`` or ``Reject(...)``; no run to resume.
    """
    if not answers:
        return {}
    if not isinstance(answers, dict):
        raise ApprovalError(f"answers must be a dict {{request_id: Approve() | Edit(...) | "
                            f"Reject(...)}}, not {type(answers).__name__}", field="answers")
    if store is None or not isinstance(run_id, str):
        raise ApprovalError("answers= continues a paused run: give resume=<run id> and "
                            "Process(checkpoint_dir=...) or store=", field="answers")
    from ray_orch.store.approvals import PauseStore

    pending = {r["id"]: r for r in PauseStore(store).pending(run_id)}
    checked = {}
    for request_id, answer in answers.items():
        if request_id not in pending:
            known = ", ".join(sorted(pending)) or "none"
            raise ApprovalError(f"run {run_id} has no pending request {request_id!r} "
                                f"(pending: {known})", field="answers", request_id=request_id)
        if not isinstance(answer, (Approve, Edit, Reject)):
            raise ApprovalError(f"the answer to {request_id!r} must be Approve(), "
                                f"Edit(value) or Reject(reason), not {answer!r}",
                                task=pending[request_id]["task"], field="answers",
                                request_id=request_id)
        checked[request_id] = answer_of(answer)
    return checked


def console_handler(request: ApprovalRequest) -> Answer:
    """Ask on this terminal: approve, edit (type the new output) or reject (say why)."""
    from rich.console import Console
    from rich.prompt import Prompt

    console = Console()
    what = (f"tool call {request.tool}({request.arguments})" if request.tool
            else f"output of task '{request.task}'")
    console.rule(f"[bold]approval {request.id}[/]: {what}")
    if request.output is not None:
        console.print(request.output.raw)
    # Escaped: "[a]" would be rich markup, and the prompt would read "pprove, dit or".
    choice = Prompt.ask(r"\[a]pprove, \[e]dit or \[r]eject", choices=["a", "e", "r"],
                        default="a")
    if choice == "e":
        return Edit(Prompt.ask("new value"), by="console")
    if choice == "r":
        return Reject(Prompt.ask("why"), by="console")
    return Approve(by="console")


class Asker:
    """Answers a run's inline requests as they arrive, through ``handler``, and sends
    each answer to the run's Supervisor. A handler that fails ends the run (the error is
    raised by the driver, chained). The console asks one question at a time, with the
    progress display held aside (``Progress.held``)."""

    def __init__(self, handler: Callable[[ApprovalRequest], Any] | None) -> None:
        self.handler = handler or console_handler
        self.jobs: list[asyncio.Future[Any]] = []
        self.failed: BaseException | None = None
        self._console: asyncio.Lock | None = None

    def on_event(self, data: dict[str, Any], supervisor: Any, screen: Any = None) -> None:
        """An ``approval_requested`` event's data arrived; ``screen`` is the driver's
        progress display (held aside while the console asks)."""
        request = ApprovalRequest.from_dict(data["request"])
        self.jobs.append(asyncio.ensure_future(self._ask(request, supervisor, screen)))

    async def _ask(self, request: ApprovalRequest, supervisor: Any, screen: Any) -> None:
        if self.handler is not console_handler:
            await self._answer(request, supervisor)
            return
        self._console = self._console or asyncio.Lock()
        async with self._console:
            held = screen.held() if hasattr(screen, "held") else contextlib.nullcontext()
            with held:
                await self._answer(request, supervisor)

    async def _answer(self, request: ApprovalRequest, supervisor: Any) -> None:
        try:
            if inspect.iscoroutinefunction(self.handler):
                answer = await self.handler(request)
            else:
                # A daemon thread: a handler still deciding never holds the exit.
                answer = await in_daemon_thread(self.handler, request,
                                                name="ray-orch-approval")
                if inspect.isawaitable(answer):
                    answer = await answer
            answer = parse_answer(answer)
        except BaseException as exc:
            self.failed = exc
            await supervisor.cancel.remote()
            return
        if answer.by is None:
            by = getattr(self.handler, "__name__", type(self.handler).__name__)
            answer = type(answer)(**{**answer.__dict__, "by": by})
        await supervisor.answer.remote(request.id, answer_of(answer))

    def raise_failure(self) -> None:
        """Raise the handler's failure, if it had one."""
        if self.failed is not None:
            raise ApprovalError(f"the approval handler failed: {type(self.failed).__name__}: "
                                f"{self.failed}", field="approval_handler") from self.failed
