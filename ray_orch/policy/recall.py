"""Memory in a task's attempts: recall before, remember after, and the model's tools.

Before a task's attempts (``run_attempts``), ``recall`` searches the memories of the run's
user, and the knowledge files of the agent and the process, for the task's description;
what the prompt does not already hold goes into it under "Relevant memories" / "Relevant
knowledge", best first, as long as it fits in the task's context budget (what the
context leaves of it; 1 byte counts as 1 token, an upper bound, so nothing is counted
by a tokenizer). Memories are optional context: one that does not fit is left out, never
an error. Once the task completed, ``remember`` keeps its output (tagged with the run,
the task, the agent and the user; the task's description, cut to 300 characters, is
kept beside it and shown with it: what the user asked is context too).
``memory_tools=True`` gives the model ``remember`` and ``recall`` tools for the same user.
The output's ``metadata["memory"]`` says what was recalled (ids, scores, sources) and
remembered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ray_orch.core import trace
from ray_orch.core.prompt import ContextItem, PromptParts
from ray_orch.policy.memory import Memory

__all__ = ["DEFAULT_RECALL_CHARS", "MEMORY_KEYWORDS", "MemoryPlan", "agent_memory",
           "agent_settings", "index_for_run", "memory_from", "memory_plan", "memory_tools",
           "recall", "remember", "run_plan"]

DEFAULT_RECALL_CHARS = 8000
"""What recalled items may add to a prompt when the model's window is unknown."""


@dataclass(kw_only=True)
class MemoryPlan:
    """A run's memory settings, as every member gets them (``RunOptions.memory``)."""

    memory: Memory | None = None
    """The process's memory (``Process(memory=...)``); None: only agents' own."""
    user_id: str | None = None
    """Whose memories the run reads and writes."""
    run_id: str = ""
    """The run, tagged on what it remembers."""
    workflow: str = ""
    """The workflow's name, tagged on what it remembers."""
    limit: int = 5
    """Memories (and as many knowledge chunks) recalled into a prompt at most."""
    knowledge: list[str] = field(default_factory=list)
    """The process's knowledge files (absolute paths, indexed by the driver)."""
    tools: bool = False
    """Give every agent the ``remember`` / ``recall`` tools."""
    default: Memory | None = None
    """``Memory()`` as the driver resolved it, for ``Agent(memory=True)`` in a process
    without memory (a member's environment may differ from the driver's)."""


def agent_memory(agent: Any, plan: MemoryPlan | None) -> Memory | None:
    """The memory an agent uses in a run: its own ``Memory``, else the process's; an
    ``Agent(memory=True)`` without one uses ``Memory()`` (the default store)."""
    own = getattr(agent, "memory", None)
    if isinstance(own, Memory):
        return own
    if plan is not None and plan.memory is not None:
        return plan.memory
    if own is True or _sources(agent, plan):  # knowledge alone: in the default store
        return plan.default if plan is not None and plan.default is not None \
            else _default_memory()
    return None


_defaults: dict[str, Memory] = {}


def _default_memory() -> Memory:
    """``Memory()``, one per default folder (``RAY_ORCH_MEMORY_DIR`` may change)."""
    from ray_orch.policy.memory import default_memory_dir

    folder = str(default_memory_dir())
    if folder not in _defaults:
        _defaults[folder] = Memory(folder)
    return _defaults[folder]


def _sources(agent: Any, plan: MemoryPlan | None) -> list[str]:
    own = getattr(agent, "knowledge_paths", None)
    own = own if isinstance(own, list) else []  # a Mock agent has a Mock for everything
    return list(dict.fromkeys([*own, *(plan.knowledge if plan else [])]))


def _remembers(agent: Any, plan: MemoryPlan | None) -> bool:
    own = getattr(agent, "memory", None)
    return own is True or isinstance(own, Memory) or (plan is not None and
                                                      plan.memory is not None)


def recall(task: Any, agent: Any, plan: MemoryPlan | None, parts: PromptParts, *,
           budget: int | None) -> dict[str, Any] | None:
    """Add the relevant memories and knowledge to ``parts`` (in place).

    Args:
        task: the task (its id names the span).
        agent: the agent (its own memory and knowledge, its role).
        plan: the run's settings (None: the agent's own only).
        parts: the prompt parts, context already fitted to the budget.
        budget: the task's context budget in tokens (None: ``DEFAULT_RECALL_CHARS``).

    Returns:
        What was recalled (``metadata["memory"]``), or None when the agent has no memory.
    """
    memory = agent_memory(agent, plan)
    if memory is None:
        return None
    sources = _sources(agent, plan)
    user = plan.user_id if plan else None
    limit = plan.limit if plan else 5
    query = parts.description
    started = time.perf_counter()
    with trace.span("memory_search", {"ray_orch.task": getattr(task, "id", None),
                                      "ray_orch.memory.namespace": memory.namespace}) as span:
        found = []
        if _remembers(agent, plan):
            found += memory.find(query, user_id=user, limit=limit * 2)
        if sources:
            from ray_orch.policy.knowledge import index_knowledge, knowledge_files

            missing = [s for s in sources if memory.store.file_digest(memory.namespace, s)
                       is None]
            if missing:  # Task.execute() outside a process: indexed here, once
                index_knowledge(memory, knowledge_files(missing, who=f"task '{task.id}'"))
            found += memory.find(query, kind="knowledge", sources=sources, limit=limit)
        chosen = _fit(found, parts, budget, limit)
        elapsed = time.perf_counter() - started
        if span is not None:
            span.set_attribute("ray_orch.memory.ids", [i.id for i in chosen])
            span.set_attribute("ray_orch.memory.scores", [float(i.score or 0) for i in chosen])
    for item in chosen:
        kind = item.metadata.get("kind")
        if kind == "knowledge":
            name = f"{item.metadata.get('source')} #{item.metadata.get('chunk')}"
            parts.knowledge.append(ContextItem(name=name, text=item.text))
        else:
            asked = item.metadata.get("question")
            text = f"{item.text} (in answer to: {asked})" if asked else item.text
            parts.memories.append(ContextItem(name=f"memory {item.id[:8]}", text=text))
    return {"recalled": [_cite(item) for item in chosen], "user_id": user,
            "search_s": round(elapsed, 6), "searches": 1 + bool(sources)}


def _cite(item: Any) -> dict[str, Any]:
    cite = {"id": item.id, "score": round(float(item.score or 0.0), 4),
            "kind": item.metadata.get("kind")}
    if cite["kind"] == "knowledge":
        cite.update(source=item.metadata.get("source"), chunk=item.metadata.get("chunk"))
    return cite


def _fit(found: list[Any], parts: PromptParts, budget: int | None, limit: int) -> list[Any]:
    """Best first, not already in the prompt, within what the budget leaves."""
    have = _norm(parts.description + "\n" + parts.context_text())
    used = len(parts.render().encode())
    room = (budget - used) if budget is not None else DEFAULT_RECALL_CHARS
    chosen: list[Any] = []
    per_kind: dict[str, int] = {}
    for item in sorted(found, key=lambda i: -(i.score or 0.0)):
        kind = item.metadata.get("kind", "memory")
        if per_kind.get(kind, 0) >= limit or _norm(item.text) in have:
            continue
        size = len(item.text.encode()) + 40  # the heading and name around it
        size += len(str(item.metadata.get("question") or "").encode()) + 20
        if size > room:
            continue
        room -= size
        per_kind[kind] = per_kind.get(kind, 0) + 1
        chosen.append(item)
    return chosen


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def remember(task: Any, agent: Any, plan: MemoryPlan | None, output: Any, *,
             iteration: int | None = None) -> str | None:
    """Keep a completed task's output as a memory of the run's user (decisions' routes
    are not kept). Returns the memory's id, or None."""
    if not _remembers(agent, plan) or getattr(task, "task_type", None) == "decision":
        return None
    memory = agent_memory(agent, plan)
    text = (output.raw or "").strip()
    if memory is None or not text:
        return None
    role = getattr(agent, "role", None)
    meta = {"task": getattr(task, "id", None), "run_id": plan.run_id if plan else None,
            "workflow": plan.workflow if plan else None, "source": "task_output",
            "question": " ".join(str(getattr(task, "description", "")).split())[:300]}
    if iteration is not None:
        meta["iteration"] = iteration
    item: dict[str, Any] = {"text": text, "metadata": meta}
    if plan is not None and plan.run_id:
        # One id per run, task, iteration and answer: a task run again after a lost
        # Supervisor (resumed from the journal) is not remembered twice.
        import hashlib

        key = "|".join(map(str, (memory.namespace, plan.run_id, meta["task"], iteration,
                                 plan.user_id, text)))
        item["id"] = hashlib.sha256(key.encode()).hexdigest()[:32]
    return memory.add_many([item], user_id=plan.user_id if plan else None,
                           agent=role if isinstance(role, str) else None)[0]


def memory_tools(agent: Any, plan: MemoryPlan | None) -> list[Any]:
    """The ``remember`` and ``recall`` tools for this agent and user (empty unless
    ``memory_tools=True`` on the process or the agent)."""
    wanted = getattr(agent, "memory_tools", None) is True or (plan is not None and plan.tools)
    memory = (agent_memory(agent, plan) or (plan.default if plan else None)) if wanted \
        else None
    if memory is None:
        return []
    user = plan.user_id if plan else None
    role = getattr(agent, "role", None)
    role = role if isinstance(role, str) else None

    def remember(text: str) -> str:
        """Remember a fact for later conversations with this user."""
        return f"remembered ({memory.add(text, user_id=user, agent=role)[:8]})"

    def recall(query: str) -> str:
        """Look up what was remembered about this user, by meaning."""
        items = memory.search(query, user_id=user, limit=plan.limit if plan else 5)
        return "\n".join(f"- {i.text}" for i in items) or "nothing remembered about that"

    return [remember, recall]


# -- the keywords: Process / AgentTeam / Agent ------------------------------------------

MEMORY_KEYWORDS = frozenset({"memory", "memory_config", "user_id", "knowledge",
                             "knowledge_sources", "embedder", "memory_tools"})
"""The keywords ``Process`` and ``Agent`` take for memory (PraisonAI's and CrewAI's
spellings: ``memory=True``, ``memory_config={...}``, ``user_id``, ``knowledge=[...]``,
``knowledge_sources=[...]``, ``embedder={...}``)."""

_CONFIG_KEYS = {"provider", "config", "user_id", "store", "storage", "rag_db_path",
                "db_path", "namespace", "embedder", "limit", "use_embedding"}


def _bad(who: str, field_name: str, message: str) -> Exception:
    from ray_orch.core.errors import InvalidTaskFieldError

    return InvalidTaskFieldError(f"{who}: {field_name} {message}", field=field_name)


def _config_value(config: dict[str, Any], *keys: str) -> Any:
    nested = config.get("config")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else {}
    for key in keys:
        for source in (config, inner):
            if source.get(key) is not None:
                return source[key]
    storage = config.get("storage")
    if "store" in keys and isinstance(storage, dict):
        return storage.get("path")
    return None


def memory_from(memory: Any, *, memory_config: Any = None, embedder: Any = None,
                who: str) -> Memory | None:
    """The ``Memory`` that ``memory=`` (and ``memory_config=``) ask for.

    Args:
        memory: None / False (none, unless a ``memory_config`` is given), True (the
            default store, or the config's), a ``Memory``, or a folder / DSN string.
        memory_config: PraisonAI's / CrewAI's dict: ``store`` (or ``storage: {"path"}``,
            ``rag_db_path``, ``db_path``), ``namespace``, ``embedder``, ``user_id``,
            ``limit``, ``provider`` (its own ``config: {...}`` is read too).
        embedder: CrewAI's ``embedder=`` (wins over the config's).
        who: names the owner in errors.

    Raises:
        InvalidTaskFieldError: values of the wrong kind.

    Example:
        >>> memory_from(None, who="Process") is None
        True
    """
    if memory_config is not None and not isinstance(memory_config, dict):
        raise _bad(who, "memory_config", f"must be a dict, not {memory_config!r}")
    config = memory_config or {}
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        import warnings

        from ray_orch.core.errors import RayOrchWarning

        warnings.warn(f"{who}: memory_config keys {unknown} have no effect in ray-orch "
                      f"(it reads {sorted(_CONFIG_KEYS)})", RayOrchWarning, stacklevel=4)
    if memory is False or (memory is None and not config):
        return None
    if isinstance(memory, Memory):
        return memory
    if memory is not None and memory is not True and not isinstance(memory, str):
        raise _bad(who, "memory", f"must be True, False, a Memory or a store (folder or "
                   f"postgresql:// DSN), not {memory!r}")
    store = memory if isinstance(memory, str) else _config_value(config, "store",
                                                                 "rag_db_path", "db_path")
    namespace = _config_value(config, "namespace") or "default"
    return Memory(store, namespace=namespace,
                  embedder=embedder if embedder is not None else _config_value(config,
                                                                               "embedder"))


def memory_plan(fields: dict[str, Any], *, who: str) -> MemoryPlan | None:
    """A ``Process``'s memory settings from its keywords (checked before Ray starts).

    Args:
        fields: the keywords of ``MEMORY_KEYWORDS`` given (None where not).
        who: names the owner in errors.

    Returns:
        The plan (its ``run_id`` set per run), or None when nothing is asked.

    Raises:
        InvalidTaskFieldError: a value of the wrong kind, a knowledge path that does not
            exist.
    """
    config = fields.get("memory_config")
    memory = memory_from(fields.get("memory"), memory_config=config,
                         embedder=fields.get("embedder"), who=who)
    user = fields.get("user_id")
    if user is None and isinstance(config, dict):
        user = _config_value(config, "user_id")
    if user is not None and (not isinstance(user, str) or not user):
        raise _bad(who, "user_id", f"must be a non-empty string, not {user!r}")
    tools = fields.get("memory_tools")
    if tools is not None and not isinstance(tools, bool):
        raise _bad(who, "memory_tools", f"must be True or False, not {tools!r}")
    limit = (config or {}).get("limit", 5)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise _bad(who, "memory_config", f"['limit'] must be an int >= 1, not {limit!r}")
    sources = _knowledge_of(fields, who)
    if memory is None and not sources and not tools and user is None:
        return None
    return MemoryPlan(memory=memory, user_id=user, limit=limit, knowledge=sources,
                      tools=bool(tools),
                      default=_default_memory() if sources or (tools and not memory) else None)


def _knowledge_of(fields: dict[str, Any], who: str) -> list[str]:
    from ray_orch.policy.knowledge import knowledge_files

    given = [g for g in (fields.get("knowledge"), fields.get("knowledge_sources"))
             if g is not None]
    paths: list[str] = []
    for entry in given:
        paths += [str(p) for p in knowledge_files(entry, who=who)]
    return list(dict.fromkeys(paths))


def agent_settings(agent: Any) -> None:
    """Check and normalise an ``Agent``'s memory keywords (called by ``Agent.__init__``,
    after it stored them): ``memory`` becomes None, True or a ``Memory``; ``knowledge``
    (or ``knowledge_sources``) gives ``knowledge_paths``.

    Raises:
        InvalidTaskFieldError: naming the agent and the field.
    """
    who = f"agent '{agent.role}'"
    memory = memory_from(getattr(agent, "memory", None),
                         memory_config=getattr(agent, "memory_config", None),
                         embedder=getattr(agent, "embedder", None), who=who)
    if getattr(agent, "memory", None) is True and not getattr(agent, "memory_config", None) \
            and getattr(agent, "embedder", None) is None:
        memory = True  # type: ignore[assignment]  # the run's memory, else Memory()
    agent.memory = memory
    tools = getattr(agent, "memory_tools", None)
    if tools is not None and not isinstance(tools, bool):
        raise _bad(who, "memory_tools", f"must be True or False, not {tools!r}")
    agent.knowledge_paths = _knowledge_of(
        {"knowledge": getattr(agent, "knowledge", None),
         "knowledge_sources": getattr(agent, "knowledge_sources", None)}, who)


def run_plan(plan: MemoryPlan | None, agents: list[Any], *, run_id: str,
             workflow: str) -> MemoryPlan | None:
    """A run's memory settings: the process's (``memory_plan``), or empty ones when only
    agents have memory or knowledge; tagged with the run.

    Args:
        plan: the process's plan, or None.
        agents: every agent of the run (task agents included).
        run_id, workflow: what the run's memories are tagged with.

    Returns:
        The plan the members get (``RunSpec.memory``), or None when nothing remembers.
    """
    import dataclasses

    # Agents (not a Mock, whose attributes are all Mocks): agent_settings listed these.
    owners = [a for a in agents if isinstance(getattr(a, "knowledge_paths", None), list)]
    if plan is None:
        if not any(a.memory or a.knowledge_paths for a in owners):
            return None
        plan = MemoryPlan()
    default = plan.default
    if default is None and any(a.memory is True or a.knowledge_paths for a in owners):
        # Agent(memory=True)'s default store, resolved here: a member's HOME and
        # environment may differ from the driver's.
        default = Memory()
    return dataclasses.replace(plan, run_id=run_id, workflow=workflow, default=default)


def index_for_run(plan: MemoryPlan | None, agents: list[Any]) -> dict[str, str]:
    """Index every knowledge file of the run (the process's and its agents'), on the
    driver, before anything is dispatched: members only search. Returns
    ``{source: "indexed" | "unchanged"}``."""
    from pathlib import Path

    from ray_orch.policy.knowledge import index_knowledge

    done: dict[str, str] = {}
    for agent in agents:
        memory = agent_memory(agent, plan)
        sources = [s for s in _sources(agent, plan) if s not in done]
        if memory is not None and sources:
            done.update(index_knowledge(memory, [Path(s) for s in sources]))
    owner = plan and (plan.memory or plan.default)
    if plan is not None and owner is not None:
        rest = [Path(s) for s in plan.knowledge if s not in done]
        done.update(index_knowledge(owner, rest))
    return done
