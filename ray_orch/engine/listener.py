"""``RunListener``: the ``Listener`` port's logic, in plain Python. A run's members send
it token and tool-progress events (``push``), each member's batches delivered in the order the member
numbered them, and ask it whether a tool call may run (``ask_tool``); a person's
answers come in through ``answer``.

The ``Supervisor`` actor wraps one (calls to an async actor may run in any order, so
batches can arrive out of order); ``ray_orch.testing.fakes`` serves one in-process.

Example:
    >>> from ray_orch.engine.messages import TokenBatch
    >>> listener = RunListener()
    >>> seen = []
    >>> listener.follow(members_key="r1", workflow="w", run_id="r1", emit=seen.append)
    >>> def batch(number, text):
    ...     return TokenBatch(run_id="r1", member="m", number=number,
    ...                       events=[{"task": "t", "data": {"text": text}}])
    >>> listener.push(batch(1, "world"))   # early: held until batch 0 arrives
    >>> seen
    []
    >>> listener.push(batch(0, "hello "))
    >>> [e.data["text"] for e in seen]
    ['hello ', 'world']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray_orch.core.events import Event
from ray_orch.engine.messages import TokenBatch, ToolQuestion

__all__ = ["RunListener"]


class RunListener:
    """Token events and tool-call questions of the run in progress (one at a time)."""

    def __init__(self) -> None:
        self.members_key: str | None = None
        """The run followed (its members key), None between runs."""
        self.workflow = ""
        """The followed run's workflow name (stamped on its token events)."""
        self.run_id = ""
        """The followed run's id (stamped on its token events)."""
        self.emit: Callable[[Event], None] | None = None
        """Where the run's token events go, in order."""
        self.approvals: Any = None
        """The run's ``Approvals`` (``ask_tool``, ``answer``), if it asks inline."""
        self.held: dict[str, dict[int, list[dict[str, Any]]]] = {}
        """Batches that arrived before an earlier one, by member, by number."""
        self.expected: dict[str, int] = {}
        """The next batch number due from each member."""

    def follow(self, *, members_key: str, workflow: str, run_id: str,
               emit: Callable[[Event], None], approvals: Any = None) -> None:
        """Follow a new run: its events go to ``emit``; nothing of the last run is held."""
        self.members_key, self.workflow, self.run_id = members_key, workflow, run_id
        self.emit, self.approvals = emit, approvals
        self.held, self.expected = {}, {}

    def stop(self) -> None:
        """The run ended: later pushes and questions are of a run that has ended."""
        self.members_key, self.emit, self.approvals = None, None, None

    def push(self, batch: TokenBatch) -> None:
        """Token events of a member: delivered in the member's numbering (from 0); those
        of a run not followed are dropped."""
        if self.emit is None or batch.run_id != self.members_key:
            return
        held = self.held.setdefault(batch.member, {})
        held[batch.number] = batch.events
        expected = self.expected.get(batch.member, 0)
        while expected in held:
            for event in held.pop(expected):
                kind = event.pop("kind", "token")  # token, or tool_progress
                self.emit(Event(kind=kind, workflow=self.workflow, run_id=self.run_id,
                                **event))
            expected += 1
        self.expected[batch.member] = expected

    async def ask_tool(self, question: ToolQuestion) -> dict[str, Any]:
        """Whether a member's tool call may run: the person's answer, as data."""
        if self.approvals is None or question.run_id != self.members_key:
            return {"answer": "reject", "reason": "the run has ended"}
        return await self.approvals.ask_tool(  # type: ignore[no-any-return]
            question.task, question.tool, question.arguments)

    def answer(self, request_id: str, answer: dict[str, Any]) -> bool:
        """A person's answer to an inline approval request of the run followed."""
        if self.approvals is None:
            return False
        return self.approvals.answer(request_id, answer)  # type: ignore[no-any-return]
