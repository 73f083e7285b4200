"""Checks a run of a ``Process`` makes before Ray starts or any model is called."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ray_orch.core.errors import InvalidTaskFieldError, MissingAgentError

if TYPE_CHECKING:
    from ray_orch.engine.graph import Mode
    from ray_orch.policy.task import Task

__all__ = ["Definition", "check_api_keys", "check_hierarchical", "check_run"]


class Definition(Protocol):
    """What the checks before a run read of a process (``Process`` is one; a protocol,
    since ``Process`` calls them)."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        ...

    @property
    def task_list(self) -> list[Task]:
        """The tasks, in definition order."""
        ...

    @property
    def agents(self) -> list[Any]:
        """The agents (a hierarchical manager assigns to them)."""
        ...

    @property
    def manager_llm(self) -> Any:
        """The hierarchical manager's model."""
        ...

    @property
    def checkpoint_dir(self) -> str | None:
        """The checkpoint store's folder, if any."""
        ...

    @property
    def approval_handler(self) -> Callable[..., Any] | None:
        """Who answers approval requests inline, if anyone."""
        ...

    @property
    def store(self) -> Any:
        """The run store a run writes to and resumes from, if any."""
        ...


def check_run(process: Definition, mode: Mode, kwargs: dict[str, Any]) -> None:
    """A run's own arguments (``resume=``, ...), checked before Ray starts.

    Raises:
        UnknownKeywordError, InvalidTaskFieldError: naming the argument.
    """
    from ray_orch.policy.fields import accept_keywords

    accept_keywords("Process", kwargs, known={"resume", "allow_drift", "run_id", "answers"},
                    extra={"resume", "allow_drift", "run_id", "answers"},
                    label=f"Process '{process.name}'.{mode}()")
    resume = kwargs.get("resume")
    allow_drift = kwargs.get("allow_drift", False)
    run_id = kwargs.get("run_id")
    for fieldname, value, ok, wanted in (
            ("resume", resume, isinstance(resume, (str, bool, type(None))),
             "a run id, True or None"),
            ("allow_drift", allow_drift, isinstance(allow_drift, bool), "True or False"),
            ("run_id", run_id, run_id is None or (isinstance(run_id, str) and
                                                  run_id.strip() != ""), "a run id")):
        if not ok:
            raise InvalidTaskFieldError(f"Process '{process.name}'.{mode}(): {fieldname} "
                                        f"must be {wanted}, not {value!r}", field=fieldname)
    if resume and not process.store:
        raise InvalidTaskFieldError("resume= needs Process(checkpoint_dir=...) or store=: "
                                    "there is no run store to resume from", field="resume")

def check_api_keys(agents: Iterable[Any]) -> None:
    """Every hosted model among ``agents`` has its key: ``MissingAPIKeyError`` naming the
    variable, the last check before Ray starts (``RunDriver`` makes it once the run's
    definitions are packed), instead of a provider's refusal, retried, on the cluster."""
    from ray_orch.model.keys import check_api_key
    from ray_orch.policy.agent import Agent

    seen: set[int] = set()
    for agent in agents:
        if isinstance(agent, Agent) and id(agent) not in seen:
            seen.add(id(agent))
            check_api_key(agent.llm_config, who=f"agent '{agent.role}'", agent=agent.role)


def check_hierarchical(process: Definition) -> None:
    """What a hierarchical run needs: agents with unique roles, every task's agent among
    them, and a model for the manager.

    Raises:
        MissingAgentError, InvalidTaskFieldError, ModelNotConfiguredError.
    """
    from ray_orch.model.keys import check_api_key
    from ray_orch.model.resolve import resolve_llm

    if not process.agents:
        raise MissingAgentError("hierarchical() needs agents=[...] for the manager to "
                                "assign tasks to", field="agents")
    roles = [str(getattr(a, "role", "")) for a in process.agents]
    duplicates = sorted({r for r in roles if roles.count(r) > 1})
    if duplicates:
        raise InvalidTaskFieldError(f"hierarchical agents need unique roles; repeated: "
                                    f"{duplicates}", field="agents")
    for task in process.task_list:
        if task.agent is not None and not any(task.agent is a for a in process.agents):
            raise InvalidTaskFieldError(
                f"task '{task.id}': its agent '{getattr(task.agent, 'role', task.agent)}' "
                "is not in the process's agents", task=task.id, field="agent")
    # Raises ModelNotConfiguredError (with how to fix it) when there is no model, and
    # MissingAPIKeyError when a hosted one has no key.
    who = "the hierarchical manager (manager_llm)"
    check_api_key(resolve_llm(process.manager_llm, who=who), who=who)
