"""``BreakerActor``: circuit-breaker state shared by every pool member, run and node."""

from __future__ import annotations

from typing import Any

import ray

from ray_orch.policy.breaker import BreakerState

NAME = "rayorch-breakers"
NAMESPACE = "ray_orch"


@ray.remote(num_cpus=0)
class BreakerActor:
    """Holds one ``BreakerState`` per breaker name."""

    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}

    def _state(self, name: str, threshold: int, timeout: float) -> BreakerState:
        if name not in self.states:
            self.states[name] = BreakerState(threshold, timeout)
        return self.states[name]

    def acquire(self, name: str, threshold: int, timeout: float) -> str:
        return self._state(name, threshold, timeout).acquire()

    def record_success(self, name: str, threshold: int, timeout: float) -> str:
        return self._state(name, threshold, timeout).record_success()

    def record_failure(self, name: str, threshold: int, timeout: float) -> str:
        return self._state(name, threshold, timeout).record_failure()

    def peek(self, name: str, threshold: int, timeout: float) -> str:
        return self._state(name, threshold, timeout).state

    def snapshot(self) -> dict[str, Any]:
        return {name: state.snapshot() for name, state in self.states.items()}


_handle: Any = None


def get_breaker_actor() -> Any:
    """The cluster's breaker actor, created on first use (named, detached)."""
    global _handle
    if _handle is None:
        _handle = BreakerActor.options(  # type: ignore[attr-defined]
            name=NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()
    return _handle
