"""What ``Task.status`` / ``.result`` / ``.error`` show: each task's last outcome, kept
beside the task, never on it.

A run keeps its state in its own records (the engine's scheduler and ``RunResult``); the
driver that ran it publishes each task's final outcome here, and an in-process
``Task.execute()`` does the same. The tasks a ``Process`` was built with are its
``peers`` here too (``execute()`` outside a process finds its context by name through
them). Both maps hold tasks weakly: a task the user drops is forgotten.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ray_orch.core.output import TaskOutput

__all__ = ["TaskOutcome", "TaskStatus", "outcome_of", "peers_of", "set_outcome",
           "set_peers"]

TaskStatus = Literal["pending", "running", "completed", "failed", "skipped", "paused"]


@dataclass(kw_only=True, frozen=True)
class TaskOutcome:
    """A task's last outcome, as its views show it."""

    status: TaskStatus = "pending"
    """Where the task got to (``"pending"`` before any run)."""
    result: TaskOutput | None = None
    """Its output, when it completed (or a script set one)."""
    error: BaseException | None = None
    """Why its last in-process ``execute()`` failed."""


_NONE = TaskOutcome()
_lock = threading.Lock()
_outcomes: weakref.WeakKeyDictionary[Any, TaskOutcome] = weakref.WeakKeyDictionary()
_peers: weakref.WeakKeyDictionary[Any, weakref.WeakValueDictionary[str, Any]] = \
    weakref.WeakKeyDictionary()


def outcome_of(task: Any) -> TaskOutcome:
    """The task's last outcome (a pending one before any).

    Example:
        >>> class T: pass
        >>> t = T()
        >>> outcome_of(t).status
        'pending'
        >>> set_outcome(t, status="completed")
        >>> outcome_of(t).status
        'completed'
    """
    return _outcomes.get(task, _NONE)


def set_outcome(task: Any, **fields: Any) -> None:
    """Change some fields of the task's last outcome (``status=``, ``result=``,
    ``error=``); the others stay."""
    with _lock:
        _outcomes[task] = replace(_outcomes.get(task, _NONE), **fields)


def set_peers(tasks: Iterable[Any]) -> None:
    """Make ``tasks`` (objects with an ``id``) each other's peers."""
    tasks = list(tasks)
    peers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary(
        {t.id: t for t in tasks})  # one map, shared: O(tasks), not O(tasks²)
    with _lock:
        for task in tasks:
            _peers[task] = peers


def peers_of(task: Any) -> Mapping[str, Any]:
    """The tasks of the process the task was last built into, by name (empty if none)."""
    return _peers.get(task) or {}
