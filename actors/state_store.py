"""``StateStore``: a team's shared state (PraisonAI's ``set_state`` / ``get_state``).

One actor per ``AgentTeam``, named ``rayorch-state-<id>`` in namespace ``ray_orch``, so a
tool running in an agent's actor, a callback on the driver and the driver itself all read
and write the same values. Every change is one actor call, so ``increment`` and
``append`` are atomic however many tasks run at once. The team snapshots ``all()`` into
its checkpoint directory as tasks complete, and loads it back on resume.
"""

from __future__ import annotations

from typing import Any

import ray

NAMESPACE = "ray_orch"


class StateValues:
    """Key-value state shared by a team's driver, callbacks and tools.

    Args:
        initial: the values to start with.
    """

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(initial or {})

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``."""
        self.data[key] = value

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys at once."""
        self.data.update(values)

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return self.data.pop(key, _MISSING) is not _MISSING

    def has(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return key in self.data

    def all(self) -> dict[str, Any]:
        """Every key and value (a copy)."""
        return dict(self.data)

    def clear(self) -> None:
        """Remove every key."""
        self.data.clear()

    def increment(self, key: str, amount: float = 1, default: float = 0) -> float:
        """Add ``amount`` to ``key`` (``default`` when unset), atomically; the new value."""
        value = self.data.get(key, default) + amount
        self.data[key] = value
        return value  # type: ignore[no-any-return]

    def append(self, key: str, value: Any, max_length: int | None = None) -> list[Any]:
        """Append ``value`` to the list at ``key``, atomically, keeping at most the last
        ``max_length`` items; the new list."""
        items = list(self.data.get(key) or [])
        items.append(value)
        if max_length is not None and len(items) > max_length:
            items = items[-max_length:]
        self.data[key] = items
        return items


_MISSING = object()

StateStore = ray.remote(num_cpus=0)(StateValues)


def store_name(team_id: str) -> str:
    """The actor name of a team's store."""
    return f"rayorch-state-{team_id}"


def start_store(team_id: str, initial: dict[str, Any]) -> Any:
    """Start (or find) the team's store. Ray must be connected."""
    return StateStore.options(name=store_name(team_id), namespace=NAMESPACE,  # type: ignore[attr-defined]
                              get_if_exists=True).remote(initial)


def find_store(team_id: str) -> Any | None:
    """The team's store, if it was started (from any process of the cluster)."""
    try:
        return ray.get_actor(store_name(team_id), namespace=NAMESPACE)
    except ValueError:
        return None
