"""Pools sized to their backlog: how many members the attempts that may queue at once
need. ``Pool`` (``engine/dispatch.py``) leases that many together, in one lease, and
binds them at once; each takes attempts once it is up.

Example:
    >>> needed(200, capacity=64, have=1, most=4)   # a default agent, a loop of 200
    3
    >>> needed(40, capacity=64, have=1, most=4)
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["loop_backlogs", "needed"]


def needed(backlog: int, *, capacity: int, have: int, most: int) -> int:
    """How many members to add so that ``backlog`` attempts run at once.

    Args:
        backlog: attempts that may wait at once.
        capacity: attempts one member runs at once (``max_concurrency``).
        have: members already counted for the backlog.
        most: the most members the backlog may have (``max_pool_size`` minus the
            members not counted in ``have``).
    """
    return max(0, min(most, -(-backlog // max(1, capacity))) - have)


def loop_backlogs(tasks: dict[str, Any], loops: dict[str, int],
                  key: Callable[[Any], str]) -> dict[str, int]:
    """The largest static loop of each agent, by ``key(agent)``: all its items may queue
    at once. A loop of the run's default agent (``agent=None``) counts for none.

    Args:
        tasks: the run's tasks, by name.
        loops: the item count of each loop over static data, by task name.
        key: an agent's pool key.

    Example:
        >>> from types import SimpleNamespace as Task
        >>> loop_backlogs({"each": Task(agent="w"), "other": Task(agent=None)},
        ...               {"each": 200, "other": 5}, key=str)
        {'w': 200}
    """
    backlog: dict[str, int] = {}
    for name, items in loops.items():
        agent = getattr(tasks.get(name), "agent", None)
        if agent is not None:
            backlog[key(agent)] = max(backlog.get(key(agent), 0), items)
    return backlog
