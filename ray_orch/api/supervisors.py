"""The driver's Supervisors and what it sends them: a run's id, its spec pickled once
(here, so that what cannot be sent is named before anything runs), and the Supervisors
it keeps between runs."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from ray_orch.core.errors import SerializationError

if TYPE_CHECKING:
    from ray_orch.engine.runspec import RunSpec
    from ray_orch.policy.task import Task

__all__ = ["detach_schemas", "driver_job", "keep_supervisor", "lease_supervisor", "new_run_id",
           "pack", "return_idle_supervisors", "take_supervisor"]

# Supervisors this driver ran with and may run with again, by registry and Ray job (a
# handle of an earlier connection is never reused): a run then starts without a registry
# round trip (~3 ms here). The registry still owns them.
_idle_supervisors: dict[Any, list[Any]] = {}
_idle_lock = threading.Lock()
_IDLE_SUPERVISORS = 4
# A standing runtime's Supervisor stays with its driver this long after a run (the next
# run starts without leasing one, and the last ends without giving it back: ~5 ms a run
# here), then goes back to the registry for other scripts; at the driver's exit at once.
# A driver that ends without giving it back (``ray.shutdown()``, a crash) leaves it to
# the registry, which takes back the Supervisors of ended jobs (``reclaim_orphans``).
_STANDING_GRACE_S = 10.0
# id(handle) -> (kept since, registry, handle, key): the standing runtime's kept.
_standing: dict[int, tuple[float, Any, Any, Any]] = {}
_kept = threading.Condition(_idle_lock)
_returner: list[threading.Thread] = []
_untracked: set[Any] = set()  # registries that do not take back an ended job's


def driver_job() -> str | None:
    """This driver's Ray job id (None before Ray is connected)."""
    import ray

    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else None


def lease_supervisor(registry: Any) -> Any:
    """The registry's call that leases a Supervisor (a ref), with this driver's job id:
    the standing registry takes back the Supervisors of jobs that ended keeping one."""
    try:
        return registry.lease_supervisor_for.remote(driver_job())
    except AttributeError:  # a runtime an older ray-orch started: give it back at once
        _untracked.add(registry._actor_id)
        return registry.lease_supervisor.remote()


def _key(registry: Any) -> Any:
    return (registry._actor_id, driver_job())


def take_supervisor(registry: Any) -> Any | None:
    with _idle_lock:
        idle = _idle_supervisors.get(_key(registry))
        if not idle:
            return None
        handle = idle.pop()
        _standing.pop(id(handle), None)  # (its run keeps it again, or drops it if lost)
        return handle


def keep_supervisor(registry: Any, handle: Any) -> None:
    """Keep ``handle`` for this driver's next run; a standing runtime's goes back to its
    registry after ``_STANDING_GRACE_S`` unused, or at exit."""
    from actors.registry import is_standing
    from ray_orch.api.heal import return_supervisor

    standing, key = is_standing(), _key(registry)
    with _idle_lock:
        idle = _idle_supervisors.setdefault(key, [])
        if len(idle) < _IDLE_SUPERVISORS and not (standing and registry._actor_id in _untracked):
            idle.append(handle)
            if standing:
                _return_later(registry, handle, key)
            return
    if not return_supervisor(registry, handle):
        registry.give_back_supervisor.remote(handle)


def _return_later(registry: Any, handle: Any, key: Any) -> None:
    # (under ``_idle_lock``) One thread returns them all, started once (a thread a run
    # would cost the run's end ~1 ms).
    if not _returner:
        _returner.append(threading.Thread(target=_return_when_idle, name="ray-orch-kept",
                                          daemon=True))
        _returner[0].start()
        atexit.register(return_idle_supervisors)
    _standing[id(handle)] = (time.monotonic(), registry, handle, key)
    _kept.notify()


def _return_when_idle() -> None:
    from ray_orch.api.heal import return_supervisor

    while True:
        with _idle_lock:
            now = time.monotonic()
            due = [k for k in _standing.values() if now - k[0] >= _STANDING_GRACE_S]
            for _, _, handle, key in due:
                del _standing[id(handle)]
                _unkeep(key, handle)
            if not due:
                first = min((k[0] for k in _standing.values()), default=None)
                _kept.wait(None if first is None else first + _STANDING_GRACE_S - now)
                continue
        for _, registry, handle, _ in due:
            with contextlib.suppress(Exception):  # Ray shut down: the registry takes it
                return_supervisor(registry, handle)


def _unkeep(key: Any, handle: Any) -> None:
    # (under ``_idle_lock``) ``handle`` is no longer this driver's to take.
    idle = _idle_supervisors.get(key, [])
    idle[:] = [h for h in idle if h is not handle]


def return_idle_supervisors() -> int:
    """Give the standing runtime's Supervisors this driver keeps back to their registry
    now, and wait until they arrived (at exit); returns how many."""
    from ray_orch.api.heal import return_supervisor, wait_for_returns

    with _idle_lock:
        kept = list(_standing.values())
        _standing.clear()
        for _, _, handle, key in kept:
            _unkeep(key, handle)
    count = 0
    for _, registry, handle, _ in kept:
        with contextlib.suppress(Exception):
            count += return_supervisor(registry, handle)
    wait_for_returns()
    return count


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
