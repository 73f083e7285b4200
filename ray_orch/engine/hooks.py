"""Listeners of a run: what happens when a dispatch finishes, a task's output is final,
or the run ends. The run loop calls them; they never decide what runs next.

The journal, the budget, the result cache and the events (which become metrics, the
stream and progress) are each one listener, as burr's ``PostRunStepHook`` persists state
after each step. A new cross-cutting concern (tracing, approvals' audit) is a new hook,
not new lines in the loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray_orch.core.errors import BudgetExceededError
from ray_orch.core.output import TaskOutput

if TYPE_CHECKING:
    from ray_orch.engine.ports import Cache
    from ray_orch.engine.reporting import Reporter
    from ray_orch.engine.scheduler import Dispatch
    from ray_orch.store.journal import Journal

__all__ = ["BudgetHook", "CacheHook", "EventsHook", "Finished", "JournalHook", "RunHook"]


@dataclass(kw_only=True)
class Finished:
    """One dispatch that ended: a task's attempt, or one loop iteration."""

    dispatch: Dispatch
    """What was dispatched (task, visit, iteration)."""
    role: str | None
    """The role of the agent that ran it."""
    output: TaskOutput | None = None
    """Its output, when it succeeded."""
    error: BaseException | None = None
    """Why it failed, when it did (the cause, not a wrapper)."""
    started: float = field(default_factory=time.time)
    """When it became ready (for a failure's duration)."""

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every model call it made, failed ones included."""
        if self.output is not None:
            return list(self.output.metadata.get("llm_calls", []))
        return list(getattr(self.error, "attempt_log", None) or [])


class RunHook:
    """A listener of a run; every method is optional (the default does nothing)."""

    def dispatch_finished(self, done: Finished) -> None:
        """A dispatch ended (succeeded or failed); called before anything downstream."""

    def iteration_completed(self, task: str, visit: int, index: int,
                            output: TaskOutput) -> None:
        """One iteration of a loop task succeeded."""

    def task_completed(self, task: str, visit: int, output: TaskOutput) -> None:
        """A task's output is final for this visit (a loop's once all its items are)."""

    async def settle(self) -> None:
        """The run is ending: finish what this hook started (awaited before
        ``run_finished``)."""

    def run_finished(self, status: str) -> None:
        """The run ended: ``completed``, ``failed`` or ``cancelled``."""


class EventsHook(RunHook):
    """Turns finished dispatches into events: model calls, retries, fallbacks, the task's
    end and a decision's route (the driver's stream, progress and Prometheus)."""

    def __init__(self, reporter: Reporter, *, outputs_for: set[str] | None = None) -> None:
        self.reporter = reporter
        # Tasks whose final output the driver needs even when it does not stream the run
        # (a callback or an output_file runs there).
        self.outputs_for = outputs_for or set()

    def dispatch_finished(self, done: Finished) -> None:
        emit = self.reporter.emit
        name = done.dispatch.task
        self._calls(name, done.role, done.calls)
        self._tool_calls(name, done)
        if done.output is None:
            cause = done.error
            emit("task_finished", task=name, agent_role=done.role, status="failed",
                 outcome=type(cause).__name__, duration_s=time.time() - done.started,
                 data={"error": str(cause)[:500]})
            return
        meta = done.output.metadata
        if meta.get("retry_count"):
            emit("retry", task=name, agent_role=done.role, data={"count": meta["retry_count"]})
        if meta.get("fallback"):
            emit("fallback", task=name, agent_role=done.role)
        if isinstance(meta.get("memory"), dict):
            emit("memory", task=name, agent_role=done.output.agent or done.role,
                 data={**meta["memory"], "iteration": done.dispatch.iteration})
        data = {"queue_s": meta.get("queue_s", 0.0), "iteration": done.dispatch.iteration,
                "of": done.dispatch.of,
                "started": meta.get("started_at"), "finished": time.time(),
                "retries": meta.get("retry_count", 0)}
        if self.reporter.streaming and done.dispatch.iteration is not None:
            data["output"] = done.output.model_dump(mode="json")
        emit("task_finished", task=name, agent_role=done.output.agent or done.role,
             model=meta.get("model"), status="completed", duration_s=meta.get("execution_time"),
             data=data)

    def task_completed(self, task: str, visit: int, output: TaskOutput) -> None:
        if "decision" in output.metadata:
            self.reporter.emit("decision", task=task, data={"route": output.metadata["decision"]})
        if self.reporter.streaming or task in self.outputs_for:
            self.reporter.emit("task_completed", task=task, agent_role=output.agent,
                               data={"output": output.model_dump(mode="json"), "visit": visit})

    def _tool_calls(self, task: str, done: Finished) -> None:
        calls = (done.output.metadata.get("tool_calls", []) if done.output is not None
                 else getattr(done.error, "tool_calls", None) or [])
        for call in calls:
            unknown = call.get("where") == "unknown"  # a name the model made up: one label
            self.reporter.emit(
                "tool_call", task=task, agent_role=done.role,
                outcome="ok" if call.get("ok") else "error", duration_s=call.get("duration_s"),
                data={"tool": "unknown_tool" if unknown else call.get("name"),
                      "arguments": call.get("arguments"), "where": call.get("where"),
                      "replayed": call.get("replayed", False), "started": call.get("started"),
                      "iteration": done.dispatch.iteration, "error": call.get("error"),
                      "stdout": call.get("stdout") or None})

    def _calls(self, task: str, role: str | None, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            outcome = call.get("outcome")
            self.reporter.emit("llm_call", task=task, agent_role=role, model=call.get("model"),
                               outcome=outcome, duration_s=call.get("duration_s"),
                               tokens_prompt=call.get("prompt_tokens", 0),
                               tokens_completion=call.get("completion_tokens", 0),
                               cost_usd=call.get("cost_usd", 0.0))
            if outcome != "success":
                self.reporter.emit("attempt_failed", task=task, agent_role=role, outcome=outcome)


class BudgetHook(RunHook):
    """Counts every model call, failed or not, against the run's token and dollar
    budget; once reached, ``error`` is set and the run dispatches nothing new."""

    def __init__(self, *, run_id: str, tokens: int | None, usd: float | None) -> None:
        self.run_id = run_id
        self.budget_tokens = tokens
        self.budget_usd = usd
        self.tokens = 0
        self.cost = 0.0
        self.error: BudgetExceededError | None = None

    def dispatch_finished(self, done: Finished) -> None:
        for call in done.calls:
            self.tokens += int(call.get("prompt_tokens", 0) or 0) + \
                int(call.get("completion_tokens", 0) or 0)
            self.cost += float(call.get("cost_usd", 0.0) or 0.0)
        over = []
        if self.budget_tokens is not None and self.tokens >= self.budget_tokens:
            over.append(f"{self.tokens} tokens used of a budget of {self.budget_tokens}")
        if self.budget_usd is not None and self.cost >= self.budget_usd:
            over.append(f"${self.cost:.4f} spent of a budget of ${self.budget_usd}")
        if over and self.error is None:
            self.error = BudgetExceededError(
                f"run {self.run_id} stopped dispatching: " + "; ".join(over) +
                " (in-flight tasks finished; completed results are kept)")


class JournalHook(RunHook):
    """Records each completed task, decision and loop iteration durably, before anything
    downstream of it is dispatched (a hand-off's follower waits for its member's record
    instead: ``engine.handoff``), and the run's end."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def iteration_completed(self, task: str, visit: int, index: int,
                            output: TaskOutput) -> None:
        self.journal.iteration_done(task, visit, index, output)

    def task_completed(self, task: str, visit: int, output: TaskOutput) -> None:
        self.journal.task_done(task, visit, output)

    def run_finished(self, status: str) -> None:
        self.journal.finish(status)


class CacheHook(RunHook):
    """Stores the output of each task that was looked up in the result cache and missed
    (the lookup itself happens before the task runs: ``Run``)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.missed: dict[tuple[str, int, int | None], tuple[str, float]] = {}
        self.puts: list[Any] = []

    def dispatch_finished(self, done: Finished) -> None:
        entry = self.missed.pop(done.dispatch.key, None)
        if entry is not None and done.output is not None:
            key, ttl = entry
            done.output.metadata["cache"] = "miss"
            self.puts.append(self.cache.put.remote(key, done.output.model_dump(mode="json"),
                                                   ttl))

    async def settle(self) -> None:
        # Stored before the run returns: the next run's lookup must find them.
        puts, self.puts = self.puts, []
        await asyncio.gather(*puts)
