"""``AgentActor``: an ``AgentMember`` as a Ray actor (async: many attempts at once).

The ``ActorRegistry`` (``actors/registry.py``) leases these to runs and keeps them warm
between runs.
"""

from __future__ import annotations

from typing import Any

import ray

from ray_orch.core.errors import RunError
from ray_orch.core.line import open_inbox
from ray_orch.core.proc import settle_heap
from ray_orch.engine.member import AgentMember, RunOptions, import_lean_client
from ray_orch.observe.tracing import configure as configure_tracing


@ray.remote(num_cpus=0)
class AgentActor(AgentMember):
    """Executes task attempts; holds the agents and tasks of the runs it serves."""

    def __init__(self) -> None:
        super().__init__()
        settle_heap()

    def portable(self, exc: BaseException) -> BaseException:
        # Errors travel back as values in a batch: one that cannot be pickled is described.
        import ray.cloudpickle as pickle

        try:
            pickle.dumps(exc)
        except Exception:
            return RunError(f"{type(exc).__name__}: {exc}")
        return exc

    async def open_line(self) -> None:
        # Named after this actor: any process here that holds its handle reaches it.
        if self.line_open:
            return
        line = await open_inbox(ray.get_runtime_context().get_actor_id())
        if line is not None:  # else no copies come here: the calls still do
            line.on("deliver", self._delivered)
            line.on("run", self.starts.copy)
            line.on("unrun", self.starts.cancel)
            self.line_open = True

    def configure(self, options: RunOptions) -> None:
        # Spans go where the driver's OTEL_* settings say (tracing off without them).
        configure_tracing(options.telemetry)

    def warm_imports(self) -> int:
        """Load the lean model client's path now (a standing runtime's prewarmed member:
        its first task then imports nothing). Returns this pid."""
        import os

        import_lean_client()
        return os.getpid()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "node_id": ray.get_runtime_context().get_node_id()}
