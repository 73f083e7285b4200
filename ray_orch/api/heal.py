"""The driver's side of self-healing runs and of the standing runtime's Supervisors.

A run whose Supervisor dies mid-run (its process killed, its node lost) continues when
it has a journal: a new Supervisor resumes it from the journal, so no task that had
completed is asked of the model again, and the driver's ``workflow()`` returns the
results. A run has a journal when it has a run store (``checkpoint_dir`` / ``store``), or when a standing
runtime started by ``ray-orch up`` gives it one (``RuntimeInfo.journal_dir()``). Without
a journal the loss reaches the driver at once, as an error.

On a standing runtime the driver keeps no Supervisor of its own: each goes back to the
standing registry after its run, so the next script (another process) finds it warm,
with the members it keeps.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ray_orch.core.errors import ResumeError

if TYPE_CHECKING:
    from ray_orch.engine.runspec import RunResult, RunSpec

__all__ = ["MAX_RECOVERIES", "Follower", "follow", "prepare", "return_supervisor",
           "wait_for_returns"]

MAX_RECOVERIES = 3
"""How many lost Supervisors one run survives."""

_returns: list[Any] = []
_returns_lock = threading.Lock()


def prepare(spec: RunSpec) -> bool:
    """Give a run on a standing runtime its default journal (when it has none), so that
    it survives the loss of its Supervisor; True when ``spec`` changed (pack it again)."""
    from ray_orch.api import standing

    info = standing.joined()
    if spec.store is not None or info is None or not info.started_head:
        return False
    from ray_orch.api.stores import opened, shipped

    spec.store = shipped(opened(info.run_store()))
    return True


class Follower(Protocol):
    """What healing needs of a run's driver (``api.driver.RunDriver`` is one; a protocol,
    since the driver calls this module)."""

    @property
    def spec(self) -> RunSpec:
        """The run as its Supervisor gets it."""
        ...

    @property
    def run_id(self) -> str:
        """The run's id, as its Supervisor's events name it."""
        ...

    async def follow(self, packed: bytes, *, live: Any = None, asker: Any = None
                     ) -> RunResult:
        """Run ``packed`` on the current Supervisor and follow it to its result."""
        ...

    async def replace_supervisor(self) -> None:
        """Stop what the lost Supervisor held and lease a new one."""
        ...


async def follow(driver: Follower, packed: bytes, *, pack: Callable[[RunSpec], bytes],
                 live: Any = None, asker: Any = None) -> RunResult:
    """``driver.follow(packed)``, again on a new Supervisor that resumes the run from its
    journal each time its Supervisor is lost (up to ``MAX_RECOVERIES``).

    Raises:
        ActorDiedError / ActorUnavailableError: the Supervisor was lost and the run has
            no journal (or was lost too often): the caller reports it.
    """
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    spec = driver.spec
    recoveries = 0
    fresh_retry = False
    while True:
        try:
            return await driver.follow(packed, live=live, asker=asker)
        except (ActorDiedError, ActorUnavailableError):
            if spec.store is None or recoveries >= MAX_RECOVERIES:
                raise
            recoveries += 1
            # The dead one's members are stopped (they may still run its attempts).
            await driver.replace_supervisor()
            # resume="latest" is resolved in the Supervisor: its events carry the real id.
            spec.run_id = driver.run_id
            spec.resume = True
            packed = pack(spec)
        except ResumeError:
            # Lost before its journal's first record: nothing completed, start afresh.
            if not spec.resume or recoveries == 0 or fresh_retry:
                raise
            fresh_retry = True
            spec.resume = False
            packed = pack(spec)


def return_supervisor(registry: Any, handle: Any) -> bool:
    """On a standing runtime, give ``handle`` back to the standing registry (for the
    next script); returns False elsewhere (the driver keeps it)."""
    from actors.registry import is_standing

    if not is_standing():
        return False
    ref = registry.give_back_supervisor.remote(handle)
    with _returns_lock:
        if not _returns:
            atexit.register(wait_for_returns)
        _returns[:] = [*_returns[-15:], ref]
    return True


def wait_for_returns() -> None:
    """At exit: make sure the Supervisors given back reached the registry (a driver that
    exits right after its run would otherwise drop the call)."""
    import ray

    with _returns_lock:
        refs, _returns[:] = list(_returns), []
    if refs and ray.is_initialized():
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=5)
