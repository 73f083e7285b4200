"""The driver's Supervisors and what it sends them: a run's id, its spec pickled once
(here, so that what cannot be sent is named before anything runs), and the Supervisors
it keeps between runs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ray_orch.core.errors import SerializationError

if TYPE_CHECKING:
    from ray_orch.engine.runspec import RunSpec
    from ray_orch.policy.task import Task

__all__ = ["detach_schemas", "keep_supervisor", "new_run_id", "pack", "take_supervisor"]

# Supervisors this driver ran with and may run with again, by registry: a run then starts
# without a registry round trip (~3 ms here). The registry still owns them.
_idle_supervisors: dict[Any, list[Any]] = {}
_idle_lock = threading.Lock()
_IDLE_SUPERVISORS = 4


def take_supervisor(registry: Any) -> Any | None:
    with _idle_lock:
        idle = _idle_supervisors.get(registry._actor_id)
        return idle.pop() if idle else None


def keep_supervisor(registry: Any, handle: Any) -> None:
    from ray_orch.api.heal import return_supervisor

    if return_supervisor(registry, handle):  # a standing runtime's: back to its registry
        return
    with _idle_lock:
        idle = _idle_supervisors.setdefault(registry._actor_id, [])
        if len(idle) < _IDLE_SUPERVISORS:
            idle.append(handle)
            return
    registry.give_back_supervisor.remote(handle)


def new_run_id() -> str:
    import time
    import uuid

    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def detach_schemas(tasks: list[Task]) -> None:
    # A pydantic model defined inside a function keeps that function's locals (open
    # servers, locks, ...) for resolving forward references later; a complete model no
    # longer needs them, and they would make it impossible to send to the cluster.
    for task in tasks:
        schema = task.output_schema()
        if schema is not None and getattr(schema, "__pydantic_complete__", False):
            schema.__pydantic_parent_namespace__ = None


def pack(spec: RunSpec) -> bytes:
    """The spec, pickled once: here, to name what cannot be sent, and as what is sent.
    The user's definitions (tasks, graph, agents, manager) go in ``definitions``, one
    pickle inside it, which the Supervisor passes on to its members as it is."""
    import dataclasses

    import ray.cloudpickle as pickle

    detach_schemas(spec.tasks)
    try:
        definitions = pickle.dumps((spec.tasks, spec.graph, spec.agents, spec.default_agent,
                                    spec.manager))
        shipped = dataclasses.replace(spec, tasks=[], graph=None, agents=[],
                                      default_agent=None, manager=None,
                                      definitions=definitions)
        return pickle.dumps(shipped)  # type: ignore[no-any-return]
    except Exception:
        for task in spec.tasks:
            for label, value in (("agent", task.agent), ("fallback_agent", task.fallback_agent),
                                 ("task", task)):
                try:
                    pickle.dumps(value)
                except Exception as exc:
                    raise SerializationError(
                        f"task '{task.id}': its {label} cannot be sent to the cluster "
                        f"({type(exc).__name__}: {exc}); keep tasks and agents free of open "
                        "files, locks, sockets and Mock objects", task=task.id,
                        field=label) from None
        raise
