"""``StoreService``: an SQLite run store served from the node that holds its file.

An SQLite store is a file on one node's disk. Members and Supervisors on other nodes
must not open "the same path" on their own disks (their writes would land elsewhere,
and a resume or a retry would not see them). :func:`route` wraps the store in a
:class:`RoutedStore` handle that remembers the node owning the file: on that node it
uses the file directly; on any other it calls a ``StoreService`` actor pinned to that
node (named per store, started on first need), so state written anywhere is read back
everywhere. A PostgreSQL store needs none of this: every node connects to it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import ray

from ray_orch.core.errors import RayOrchError
from ray_orch.store.factory import is_postgres, open_store, opened_store

__all__ = ["RoutedStore", "StoreService", "route"]

NAMESPACE = "ray_orch"
_METHODS = (
    "begin_run", "get_run", "latest_run", "list_runs", "finish_run", "save_task",
    "load_task", "load_tasks", "save_decision", "load_decisions", "save_iteration",
    "load_iterations", "cache_get", "cache_put", "cache_delete", "cache_clear",
    "save_tool_call", "load_tool_call", "tool_calls", "save_request", "save_answer",
    "pending_requests", "answers", "save_definition", "load_definition", "set_paused",
    "paused_runs", "save_graph", "load_graph", "save_result", "load_result", "check")


class StoreService:
    """Serves one store's methods to other nodes (each call one transaction).

    Args:
        spec: the store's spec (its directory).
    """

    def __init__(self, spec: str) -> None:
        self.store = open_store(spec)

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``store.method(*args, **kwargs)``; errors go back to the caller as raised."""
        if method not in _METHODS:
            raise AttributeError(f"the run store has no method {method!r}")
        return getattr(self.store, method)(*args, **kwargs)


def _here() -> str | None:
    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


class RoutedStore:
    """A :class:`~ray_orch.store.port.RunStore` handle for an SQLite store owned by one
    node: direct on that node, through its ``StoreService`` elsewhere. Pickles as
    (spec, owner node).

    Args:
        store: the store, opened on the owner node.
        node_id: the owner node's Ray id.
    """

    def __init__(self, store: Any, *, node_id: str) -> None:
        self.spec = store.spec
        self.location = store.location
        self.node_id = node_id
        self._local: Any = store
        self._service: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "location": self.location, "node_id": self.node_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _local=None, _service=None)

    def __repr__(self) -> str:
        return f"RoutedStore({self.location!r}, node={self.node_id[:8]})"

    def remote(self) -> bool:
        """Whether calls from this process go to the store service (another node)."""
        here = _here()
        return here is not None and here != self.node_id

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.remote():
            if self._local is None:
                self._local = opened_store(self.spec)  # every run's handle: one store
            return getattr(self._local, method)(*args, **kwargs)
        service = self._service or self._connect()
        try:
            return ray.get(service.call.remote(method, args, kwargs))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, (RayOrchError, KeyError)):
                raise cause from None
            raise

    def _connect(self) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = "rayorch-store-" + hashlib.sha256(self.spec.encode()).hexdigest()[:16]
        self._service = ray.remote(StoreService).options(
            name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
            num_cpus=0, max_restarts=-1, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=self.node_id,
                                                               soft=False),
        ).remote(self.spec)
        return self._service

    def close(self) -> None:
        """Close this process's own connection, if it has one."""
        if self._local is not None:
            self._local.close()


def _method(name: str) -> Any:
    def call(self: RoutedStore, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    call.__name__ = name
    call.__doc__ = f"``RunStore.{name}``, on the node that owns the file."
    return call


for _name in _METHODS:
    setattr(RoutedStore, _name, _method(_name))


def route(store: Any) -> Any:
    """The handle a run ships to its Supervisor and members: ``store`` itself for a
    network database; an SQLite store wrapped to reach its file from any node (Ray must
    be connected, on the node that holds the file)."""
    if store is None or isinstance(store, RoutedStore) or is_postgres(store.spec):
        return store
    node = _here()
    return store if node is None else RoutedStore(store, node_id=node)
