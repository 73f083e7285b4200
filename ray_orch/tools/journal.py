"""The journal of tool calls: side effects happen once.

Every completed call of a replayable tool is recorded under (run, task, visit, tool,
arguments, n) where n counts identical calls within an attempt. A retried attempt, or
the same task in a resumed run, finds the record of an identical call and reuses its
result instead of running the tool again.

Records live in memory for one task run, and, when the run has a store, in its
``tool_calls`` table, written through the run's store handle by the agent actor that
made the call (sealed and checked like every checkpoint record). The handle reaches the
same data from any node: a PostgreSQL store directly, an SQLite file through the store
service on the file's node.

"Visit" is the visit's identity as the actor sees it: a digest of the task's inputs,
upstream outputs and loop iteration. A resumed run restores the same upstream outputs,
so its visits match the interrupted run's; a cycle's later visit sees new upstream
outputs, so it runs its tools again.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

from ray_orch.store.checkpoint import canonical_json, sha256_hex
from ray_orch.store.port import RunStore

__all__ = ["ToolJournal", "ToolJournalRef", "journaled_calls", "predecessor_recorded", "recorded",
           "visit_digest"]


@dataclass(frozen=True, kw_only=True)
class ToolJournalRef:
    """Where a run's tool calls are journaled (set on its tasks by the run engine)."""

    store: RunStore
    """The run's store handle (pickled with the task to the members)."""
    run_id: str
    """The run's id (kept on resume)."""


def visit_digest(inputs: Any, context: dict[str, Any], iteration: int | None) -> str:
    """The identity of one visit of a task, from what it was given."""
    upstream = {name: getattr(out, "raw", str(out)) for name, out in sorted(context.items())}
    return sha256_hex(canonical_json({"inputs": inputs, "context": upstream,
                                      "iteration": iteration}))[:20]


recorded: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "ray_orch_predecessor_recorded", default=None)
"""In a task handed off behind another (``engine.member``): the write of that task's
record to the run store. Its model call starts at once; its tool calls and its own
record wait for the write, so nothing it does outlives a predecessor the store forgot."""


async def predecessor_recorded() -> None:
    """Wait until the predecessor's record (``recorded``) is durable; its error if the
    write failed. Nothing to wait for outside a hand-off."""
    write = recorded.get()
    if write is not None:
        await asyncio.shield(write)


class ToolJournal:
    """The tool calls of one task run: remembered across its attempts, and durably
    when ``ref`` is given.

    Args:
        task: the task's name.
        visit: ``visit_digest`` of this visit.
        ref: the run's journal location, or None (memory only).
    """

    def __init__(self, *, task: str, visit: str, ref: ToolJournalRef | None = None) -> None:
        self.task = task
        self.visit = visit
        self.ref = ref
        self.memory: dict[tuple[str, str, int], dict[str, Any]] = {}

    def _key(self, tool: str, args_key: str, nth: int) -> tuple[str, str, str, str, str, int]:
        assert self.ref is not None
        return (self.ref.run_id, self.task, self.visit, tool, args_key, nth)

    async def lookup(self, tool: str, arguments: dict[str, Any],
                     nth: int) -> dict[str, Any] | None:
        """The record of an identical earlier call (the ``nth`` such in its attempt)."""
        args_key = args_digest(arguments)
        found = self.memory.get((tool, args_key, nth))
        if found is None and self.ref is not None:
            found = await asyncio.to_thread(self.ref.store.load_tool_call,
                                            self._key(tool, args_key, nth))
        return found

    async def record(self, tool: str, arguments: dict[str, Any], nth: int,
                     record: dict[str, Any]) -> None:
        """Remember a completed call (durably, before its result goes to the model)."""
        args_key = args_digest(arguments)
        self.memory[(tool, args_key, nth)] = record
        if self.ref is not None:
            entry = {"task": self.task, "visit": self.visit, **record}
            await asyncio.to_thread(self.ref.store.save_tool_call,
                                    self._key(tool, args_key, nth), entry)


def args_digest(arguments: dict[str, Any]) -> str:
    """A short, order-independent key of a call's arguments."""
    return sha256_hex(canonical_json(arguments))[:24]


def journaled_calls(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """Every journaled tool call of a run, oldest first (for tools and operators); the
    model turns kept while a person was asked about their calls (``tools.loop``) are
    not calls.

    Example:
        >>> import tempfile
        >>> from ray_orch.store.factory import open_store
        >>> journaled_calls(open_store(tempfile.mkdtemp()), "no-such-run")
        []
    """
    return [call for call in store.tool_calls(run_id) if "turn" not in call]
