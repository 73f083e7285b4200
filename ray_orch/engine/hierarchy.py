"""The hierarchical process: ready tasks without an agent wait for the manager, which
assigns them in batches (one model call for all that are ready)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ray_orch.engine.manager import Assignment, Manager
from ray_orch.engine.scheduler import Dispatch
from ray_orch.model.resolve import resolve_llm
from ray_orch.policy.agent import Agent

__all__ = ["Hierarchy"]


class Hierarchy:
    """The manager's seat in a run.

    Args:
        manager_llm: the manager's model (``Process(manager_llm=...)``).
        workers: the agents it may assign tasks to.
        max_calls: the most manager calls of the run.
        ask: ``ask(agent, prompt, schema) -> str``: one model call as the manager agent.
        start: ``start(dispatch, agent)`` runs a dispatch on the agent it was given.
        emit: the run's event emitter.
        describe: the description of a task, by name.
    """

    def __init__(self, *, manager_llm: Any, workers: list[Any], max_calls: int,
                 ask: Callable[[Any, str, Any], Any], start: Callable[[Dispatch, Any], None],
                 emit: Callable[..., None], describe: Callable[[str], str]) -> None:
        config = resolve_llm(manager_llm, who="the hierarchical manager (manager_llm)")
        self.agent = Agent(role="Manager", goal="Coordinate the project efficiently",
                           llm=config, name="ray-orch-manager", timeout=60.0)
        self.manager = Manager(workers, lambda prompt, schema: ask(self.agent, prompt, schema),
                               max_calls=max_calls)
        self.start = start
        self.emit = emit
        self.describe = describe
        self.queue: list[Dispatch] = []
        self.job: asyncio.Task[None] | None = None
        self.assigned: dict[tuple[str, int, int | None], Assignment] = {}
        self.loads: dict[str, int] = {}
        self.on_done: Callable[[asyncio.Future[Any]], None] | None = None

    @property
    def busy(self) -> bool:
        """Tasks wait for the manager, or it is deciding."""
        return bool(self.queue) or self.job is not None

    def wait(self, dispatch: Dispatch) -> None:
        """A ready task without an agent: it waits for the manager's next batch."""
        self.queue.append(dispatch)

    def kick(self) -> None:
        """Ask the manager about what waits, unless it is deciding already."""
        if self.job is not None or not self.queue:
            return
        batch, self.queue = self.queue, []
        self.job = asyncio.ensure_future(self._assign(batch))
        if self.on_done is not None:
            self.job.add_done_callback(self.on_done)

    def done(self, job: asyncio.Future[Any]) -> None:
        """The manager's job ended: raise its error, if any, then ask again."""
        self.job = None
        job.result()
        self.kick()

    def settled(self, dispatch: Dispatch) -> Assignment | None:
        """The assignment of a dispatch that ended (its agent's load goes down)."""
        chosen = self.assigned.pop(dispatch.key, None)
        if chosen is not None:
            self.loads[chosen.agent] -= 1
        return chosen

    async def _assign(self, batch: list[Dispatch]) -> None:
        ready = {dispatch.task: self.describe(dispatch.task) for dispatch in batch}
        assignments = {a.task: a for a in await self.manager.assign(ready, dict(self.loads))}
        for dispatch in batch:
            chosen = assignments[dispatch.task]
            agent = self.manager.agents[chosen.agent]
            self.assigned[dispatch.key] = chosen
            self.loads[agent.role] = self.loads.get(agent.role, 0) + 1
            self.emit("assignment", task=dispatch.task, agent_role=agent.role,
                      data={"by": chosen.by, "reason": chosen.reason})
            self.start(dispatch, agent)
