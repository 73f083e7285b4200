"""A team's shared state: PraisonAI's ``set_state`` / ``get_state`` family.

Before the team's first run the values live in the driver; from then on in the team's
``StateStore`` actor (``actors/state_store.py``), so tools in agent actors and callbacks
on the driver share them. A pickled team (a tool that closes over it) keeps only the
store's name and reaches the same actor from any node.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["TeamState"]

STATE_FILE = "team_state.json"


class TeamState:
    """The state methods of ``AgentTeam`` (a mixin).

    Example:
        >>> state = TeamState()
        >>> state.set_state("topic", "ray"); state.get_state("topic")
        'ray'
        >>> state.increment_state("count"), state.get_state("missing", 0)
        (1, 0)
    """

    _state_id: str
    _state_local: dict[str, Any]

    def _state_init(self) -> None:
        self._state_id = uuid.uuid4().hex[:12]
        self._state_local = {}
        self._state_actor: Any = None

    def _store(self) -> Any | None:
        if not hasattr(self, "_state_id"):
            self._state_init()
        if self._state_actor is None:
            from ray_orch.core.proc import ray_is_running

            if ray_is_running():
                from actors.state_store import find_store

                self._state_actor = find_store(self._state_id)
        return self._state_actor

    def _call(self, method: str, *args: Any) -> Any:
        store = self._store()
        if store is not None:
            import ray

            return ray.get(getattr(store, method).remote(*args))
        from actors.state_store import StateValues

        local = StateValues.__new__(StateValues)
        local.data = self._state_local
        return getattr(local, method)(*args)

    def _start_state(self, initial: dict[str, Any] | None = None) -> Any:
        """Start the store actor with the local values (Ray connected); its handle."""
        from actors.state_store import start_store

        if self._store() is None:
            values = dict(self._state_local)
            values.update(initial or {})
            self._state_actor = start_store(self._state_id, values)
        elif initial:
            self._call("update", initial)
        return self._state_actor

    def set_state(self, key: str, value: Any) -> None:
        """Set a shared value."""
        self._call("set", key, value)

    def get_state(self, key: str, default: Any = None) -> Any:
        """A shared value, or ``default``."""
        return self._call("get", key, default)

    def update_state(self, updates: dict[str, Any]) -> None:
        """Set several shared values."""
        self._call("update", dict(updates))

    def clear_state(self) -> None:
        """Remove every shared value."""
        self._call("clear")

    def has_state(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return bool(self._call("has", key))

    def get_all_state(self) -> dict[str, Any]:
        """Every shared value."""
        return dict(self._call("all"))

    def delete_state(self, key: str) -> bool:
        """Remove ``key``; whether it was set."""
        return bool(self._call("delete", key))

    def increment_state(self, key: str, amount: float = 1, default: float = 0) -> float:
        """Add ``amount`` to ``key`` atomically; the new value."""
        return self._call("increment", key, amount, default)  # type: ignore[no-any-return]

    def append_to_state(self, key: str, value: Any, max_length: int | None = None) -> list[Any]:
        """Append to the list at ``key`` atomically; the new list."""
        return list(self._call("append", key, value, max_length))

    def _state_getstate(self) -> dict[str, Any]:
        return {"_state_id": getattr(self, "_state_id", None), "_state_local": {},
                "_state_actor": None}


def save_state(values: dict[str, Any], checkpoint_dir: str) -> None:
    """Write a snapshot of the state beside the run's checkpoints (atomically)."""
    path = Path(checkpoint_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, default=str, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def load_state(checkpoint_dir: str) -> dict[str, Any]:
    """The last snapshot of the state in ``checkpoint_dir`` (empty if none)."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))
