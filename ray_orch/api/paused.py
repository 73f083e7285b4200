"""A paused run rebuilt from its run store alone: ``ray-orch approve`` and the run
viewer continue it with ``resume=run_id, answers=...``."""

from __future__ import annotations

from ray_orch.api.process import Process
from ray_orch.core.approvals import ApprovalError
from ray_orch.store.approvals import PauseStore

__all__ = ["paused_process"]


def paused_process(store: str, run_id: str) -> tuple[Process, str]:
    """The ``Process`` of a paused run, rebuilt from the definition its store keeps
    (signed when the run started, verified before anything is unpickled), and the mode
    it ran in.

    Args:
        store: the run store's spec (a directory or a DSN).
        run_id: the paused run.

    Raises:
        ApprovalError: no paused run ``run_id`` in the store.
        StoreIntegrityError: its stored definition fails its authentication: nothing is
            unpickled, nothing runs.
        StoreError: the store cannot be used.
    """
    import ray.cloudpickle as pickle

    from ray_orch.api.stores import opened

    handle = opened(store)
    found = PauseStore(handle).spec(run_id)  # verified before anything is unpickled
    if found is None:
        raise ApprovalError(f"no paused run {run_id!r} in {handle.location}", field="run")
    mode, packed = found
    spec = pickle.loads(packed)
    spec.open_definitions(pickle.loads)
    process = Process(tasks=spec.tasks, agents=spec.agents, manager_llm=spec.manager,
                      name=spec.workflow, store=store,
                      max_visits=spec.max_visits, max_steps=spec.max_steps,
                      on_failure=spec.on_failure, cache=spec.cache,
                      budget_tokens=spec.budget_tokens, budget_usd=spec.budget_usd,
                      metrics=spec.metrics)
    return process, mode
