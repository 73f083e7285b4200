"""A paused run rebuilt from its checkpoint store alone: ``ray-orch approve`` and the run
viewer continue it with ``resume=run_id, answers=...``."""

from __future__ import annotations

from ray_orch.api.process import Process
from ray_orch.core.approvals import ApprovalError
from ray_orch.store.approvals import PauseStore

__all__ = ["paused_process"]


def paused_process(directory: str, run_id: str) -> tuple[Process, str]:
    """The ``Process`` of a paused run, rebuilt from the definition its store keeps, and
    the mode it ran in.

    Raises:
        ApprovalError: no paused run ``run_id`` in ``directory``.
    """
    import ray.cloudpickle as pickle

    store = PauseStore(directory)
    try:
        found = store.spec(run_id)
    finally:
        store.close()
    if found is None:
        raise ApprovalError(f"no paused run {run_id!r} in {directory}", field="run")
    mode, packed = found
    spec = pickle.loads(packed)
    spec.open_definitions(pickle.loads)
    process = Process(tasks=spec.tasks, agents=spec.agents, manager_llm=spec.manager,
                      name=spec.workflow, checkpoint_dir=directory,
                      max_visits=spec.max_visits, max_steps=spec.max_steps,
                      on_failure=spec.on_failure, cache=spec.cache,
                      budget_tokens=spec.budget_tokens, budget_usd=spec.budget_usd,
                      metrics=spec.metrics)
    return process, mode
