"""The hierarchical manager: which agent takes which ready task.

At each decision point the manager model sees every ready task and every agent (role,
goal, current load) and answers with structured output whose enums are the ready task
ids and the agent roles; one answer may assign several tasks, so independent tasks run
in parallel. Answers are validated: an unknown task or agent, a task that is not ready,
or a task left out is re-asked with the problem stated (bounded); then a deterministic
fallback assigns it (least-loaded agent, ties broken by how well the role and goal match
the task). A manager that is down falls back at once rather than hanging.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

__all__ = ["Assignment", "Manager", "fallback_agent_for"]

_WORD = re.compile(r"[a-z]{3,}")


@dataclass(kw_only=True)
class Assignment:
    """One task given to one agent, and why."""

    task: str
    agent: str
    reason: str
    by: Literal["manager", "fallback"]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def fallback_agent_for(description: str, agents: list[Any], loads: dict[str, int]) -> Any:
    """Least-loaded agent; ties broken by word overlap of role+goal with the task, then role."""
    wanted = _words(description)

    def rank(agent: Any) -> tuple[int, int, str]:
        overlap = len(wanted & _words(f"{agent.role} {getattr(agent, 'goal', '')}"))
        return (loads.get(agent.role, 0), -overlap, agent.role)

    return min(agents, key=rank)


def assignment_schema(task_ids: list[str], roles: list[str]) -> type[BaseModel]:
    """``{"assignments": [{"task": <enum>, "agent": <enum>, "reason": str}, ...]}``."""
    item = create_model("TaskAssignment",
                        task=(Literal[tuple(task_ids)], ...),  # type: ignore[valid-type,arg-type]
                        agent=(Literal[tuple(roles)], ...),  # type: ignore[valid-type,arg-type]
                        reason=(Annotated[str, Field(max_length=200)], ...))
    # At most one entry per ready task: a small model held to the schema cannot repeat
    # entries until it runs out of tokens (SmolLM2 did, for 1024 tokens a call).
    entries = Annotated[list[item], Field(min_length=1, max_length=len(task_ids))]  # type: ignore[valid-type]
    return create_model("Assignments", assignments=(entries, ...))


Ask = Callable[[str, type[BaseModel]], Awaitable[str]]


class Manager:
    """Assigns ready tasks to agents by asking a model, within hard bounds.

    Args:
        agents: the agents the manager may choose from (roles must be unique).
        ask: ``await ask(prompt, schema) -> reply text`` (the manager model's call).
        max_calls: manager calls in the whole run; past it, the fallback assigns.
        max_reasks: re-asks per decision point after an invalid answer.
    """

    def __init__(self, agents: list[Any], ask: Ask, *, max_calls: int = 50,
                 max_reasks: int = 2) -> None:
        self.agents = {agent.role: agent for agent in agents}
        self.ask = ask
        self.max_calls = max_calls
        self.max_reasks = max_reasks
        self.calls = 0
        self.failures: list[str] = []

    def _prompt(self, ready: dict[str, str], loads: dict[str, int], problem: str | None) -> str:
        lines = ["You are the project manager. Assign each ready task to the best agent. "
                 "Independent tasks can run at the same time on different agents.", "",
                 "Agents (role: goal; tasks in progress):"]
        for role, agent in self.agents.items():
            lines.append(f"- {role}: {getattr(agent, 'goal', '')}; in progress: {loads.get(role, 0)}")
        lines += ["", "Ready tasks (id: description):"]
        lines += [f"- {tid}: {desc}" for tid, desc in ready.items()]
        lines += ["", "Answer with JSON: {\"assignments\": [{\"task\": <task id>, "
                  "\"agent\": <agent role>, \"reason\": <why>}, ...]}, one entry per ready task."]
        if problem:
            lines += ["", f"Your previous answer was invalid: {problem}. Fix it."]
        return "\n".join(lines)

    def _parse(self, text: str, ready: dict[str, str]) -> tuple[list[Assignment], str | None]:
        try:
            data = json.loads(text)
            items = data["assignments"] if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise TypeError("'assignments' is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return [], f"not valid JSON of the required shape ({exc})"
        found: list[Assignment] = []
        problems: list[str] = []
        for item in items:
            if not isinstance(item, dict):
                problems.append(f"entry {item!r} is not an object")
                continue
            task, role = str(item.get("task", "")), str(item.get("agent", ""))
            if task not in ready:
                problems.append(f"task '{task}' is not a ready task (ready: {sorted(ready)})")
            elif role not in self.agents:
                problems.append(f"agent '{role}' does not exist (agents: {sorted(self.agents)})")
            elif any(a.task == task for a in found):
                problems.append(f"task '{task}' was assigned twice")
            else:
                found.append(Assignment(task=task, agent=role, by="manager",
                                        reason=str(item.get("reason", ""))[:500]))
        return found, "; ".join(problems) or None

    async def assign(self, ready: dict[str, str], loads: dict[str, int]) -> list[Assignment]:
        """Assign every ready task (``{task id: description}``) to an agent.

        Returns:
            One assignment per ready task, each saying whether the manager or the
            fallback made it, and why.
        """
        remaining = dict(ready)
        result: list[Assignment] = []
        problem: str | None = None
        for _ in range(self.max_reasks + 1):
            if not remaining or self.calls >= self.max_calls:
                break
            self.calls += 1
            schema = assignment_schema(list(remaining), list(self.agents))
            try:
                text = await self.ask(self._prompt(remaining, loads, problem), schema)
            except Exception as exc:  # the manager is down: do not hang, fall back
                self.failures.append(f"{type(exc).__name__}: {exc}")
                problem = None
                break
            found, problem = self._parse(text, remaining)
            for assignment in found:
                result.append(assignment)
                remaining.pop(assignment.task)
                loads[assignment.agent] = loads.get(assignment.agent, 0) + 1
            if remaining and problem is None:
                problem = f"tasks {sorted(remaining)} were not assigned"
        for task, description in remaining.items():
            agent = fallback_agent_for(description, list(self.agents.values()), loads)
            loads[agent.role] = loads.get(agent.role, 0) + 1
            why = "manager unavailable" if self.failures and problem is None else \
                f"manager answer invalid: {problem}" if problem else "manager call limit reached"
            result.append(Assignment(task=task, agent=agent.role, by="fallback",
                                     reason=f"least-loaded agent ({why})"))
        return result
