"""PraisonAI's ``agents.yaml`` (the praisonai CLI's format), read into ray-orch's own.

PraisonAI's file lists ``roles``, each with its persona and its ``tasks``::

    framework: praisonai
    topic: renewable energy
    roles:
      researcher:
        role: Energy Researcher
        goal: Research {topic}
        backstory: An expert
        tasks:
          research_task:
            description: Research {topic}
            expected_output: Five bullet points

``convert`` turns it into the ``agents:`` / ``tasks:`` form of ``ray_orch.api.yaml_workflow`` (one agent
per role, its tasks assigned to it, run in file order: ``process`` defaults to
``sequential`` as in PraisonAI), with ``{topic}`` filled in, and moves the line of every
key along, so each problem is still reported as ``agents.yaml:LINE: ...`` at the line
the user wrote.
"""

from __future__ import annotations

import warnings
from typing import Any

from ray_orch.policy.praison import PraisonCompatWarning

__all__ = ["convert", "is_praison"]

Loc = tuple[Any, ...]

# PraisonAI role keys with no effect here (the praisonai CLI's crewai-era options).
_ROLE_NO_EFFECT = {"function_calling_llm", "allow_delegation", "max_iter", "max_rpm",
                   "max_execution_time", "cache", "system_template", "prompt_template",
                   "response_template", "min_reflect", "max_reflect", "self_reflect",
                   "reflect_llm", "memory", "knowledge", "planning"}
_ROLE_KEYS = {"role", "goal", "backstory", "llm", "instructions", "verbose", "tools",
              "tasks", "name"}
_TOP_NO_EFFECT = {"framework", "topic", "dependencies", "memory", "planning"}
_TOP_KEYS = {"roles", "process", "manager_llm", "name"}


def is_praison(data: Any) -> bool:
    """Whether a loaded YAML document is PraisonAI's format (it has ``roles:``)."""
    return isinstance(data, dict) and "roles" in data and "tasks" not in data


def convert(data: dict[str, Any], lines: dict[Loc, int],
            problems: Any) -> tuple[dict[str, Any], dict[Loc, int]]:
    """PraisonAI's document as ray-orch's, and the line of each of its keys.

    Args:
        data: the PraisonAI document.
        lines: the line of each key path in it.
        problems: the loader's problem collector (``add(loc, message)``).

    Returns:
        ``(data, lines)`` in ray-orch's form.
    """
    topic = data.get("topic")
    out: dict[str, Any] = {"process": data.get("process", "sequential"),
                           "agents": {}, "tasks": {}}
    moved: dict[Loc, Loc] = {(): ()}
    for key, value in data.items():
        if key in _TOP_KEYS - {"roles"}:
            out[key] = value
            moved[(key,)] = (key,)
        elif key in _TOP_NO_EFFECT:
            if key not in ("framework", "topic"):
                _no_effect(f"{key}:")
        elif key != "roles":
            problems.add((key,), f"unknown key '{key}' in a PraisonAI agents.yaml; allowed: "
                                 f"{', '.join(sorted(_TOP_KEYS | _TOP_NO_EFFECT))}")
    roles = data.get("roles")
    if not isinstance(roles, dict) or not roles:
        problems.add(("roles",), "roles: should map each role's name to its role, goal, "
                                 "backstory and tasks")
        return out, _move(lines, moved)
    for name, role in roles.items():
        _role(str(name), role, topic, out, moved, problems)
    if not out["tasks"]:
        problems.add(("roles",), "no role has tasks: give a role 'tasks: {name: "
                                 "{description, expected_output}}'")
    return out, _move(lines, moved)


def _role(name: str, role: Any, topic: Any, out: dict[str, Any], moved: dict[Loc, Loc],
          problems: Any) -> None:
    where: Loc = ("roles", name)
    if not isinstance(role, dict):
        problems.add(where, "should be a mapping with role, goal, backstory and tasks")
        return
    agent: dict[str, Any] = {}
    moved[("agents", name)] = where
    for key, value in role.items():
        if key in _ROLE_NO_EFFECT:
            _no_effect(f"roles.{key}")
        elif key not in _ROLE_KEYS:
            problems.add((*where, key), f"unknown key '{key}' of a role; allowed: "
                                        f"{', '.join(sorted(_ROLE_KEYS | _ROLE_NO_EFFECT))}")
        elif key == "tools":
            if value:
                problems.add((*where, key), "tools by name are not supported in YAML here; "
                                            "use a Python driver with Agent(tools=[...])")
        elif key != "tasks":
            agent[key] = _fill(value, topic)
            moved[("agents", name, key)] = (*where, key)
    out["agents"][name] = agent
    tasks = role.get("tasks") or {}
    if not isinstance(tasks, dict):
        problems.add((*where, "tasks"), "should map each task's name to its description and "
                                        "expected_output")
        return
    for tname, task in tasks.items():
        tloc: Loc = (*where, "tasks", tname)
        if str(tname) in out["tasks"]:
            from ray_orch.core.errors import DuplicateTaskError

            problems.add(tloc, f"two tasks are named '{tname}'", DuplicateTaskError,
                         field="name")
            continue
        moved[("tasks", str(tname))] = tloc
        if not isinstance(task, dict):
            out["tasks"][str(tname)] = task
            continue
        converted = {k: _fill(v, topic) for k, v in task.items()}
        for key in task:
            moved[("tasks", str(tname), key)] = (*tloc, key)
        converted.setdefault("agent", name)
        moved.setdefault(("tasks", str(tname), "agent"), where)
        out["tasks"][str(tname)] = converted


def _fill(value: Any, topic: Any) -> Any:
    if topic is not None and isinstance(value, str):
        return value.replace("{topic}", str(topic))
    return value


def _move(lines: dict[Loc, int], moved: dict[Loc, Loc]) -> dict[Loc, int]:
    """The line of each new key path: its source's, or (deeper) its prefix's source's."""
    new: dict[Loc, int] = {}
    for target, source in moved.items():
        if source in lines:
            new[target] = lines[source]
    # Deeper paths (list items, condition keys) follow their task field.
    for source, line in lines.items():
        for target, origin in moved.items():
            if len(origin) >= 4 and source[:len(origin)] == origin and source != origin:
                new[(*target, *source[len(origin):])] = line
    return new


def _no_effect(key: str) -> None:
    warnings.warn(f"agents.yaml {key} is PraisonAI's and has no effect in ray-orch",
                  PraisonCompatWarning, stacklevel=4)
