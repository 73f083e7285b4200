"""Continuing a paused run from its run store alone (``ray-orch approve``)."""

from __future__ import annotations

from typing import Any

from ray_orch.api.process import Process
from ray_orch.core.approvals import ApprovalError, parse_answer
from ray_orch.store.pauses import PauseStore

__all__ = ["continue_paused"]


def continue_paused(store: str, run_id: str, answers: dict[str, Any]) -> dict[str, Any]:
    """Continue a paused run from its run store alone (``ray-orch approve``): its
    definition was stored, signed, when it started.

    Args:
        store: the run store's spec (a directory or a DSN).
        run_id: the paused run.
        answers: answers by request id.

    Returns:
        What its ``workflow()`` returns.

    Raises:
        ApprovalError: no paused run ``run_id`` in the store.
        StoreIntegrityError: its stored definition fails its authentication (changed,
            or signed with another key): nothing is unpickled, nothing runs.
        StoreError: the store cannot be used.
        RunPaused: it asks again (another request is pending).
    """
    import ray.cloudpickle as pickle

    from ray_orch.api.stores import opened

    handle = opened(store)
    found = PauseStore(handle).spec(run_id)  # verified before anything is unpickled
    if found is None:
        raise ApprovalError(f"no paused run {run_id!r} in {handle.location}", field="run")
    mode, packed = found
    spec = pickle.loads(packed)
    process = Process(tasks=spec.tasks, agents=spec.agents, manager_llm=spec.manager,
                      name=spec.workflow, store=store,
                      max_visits=spec.max_visits, max_steps=spec.max_steps,
                      on_failure=spec.on_failure, cache=spec.cache,
                      budget_tokens=spec.budget_tokens, budget_usd=spec.budget_usd,
                      metrics=spec.metrics)
    answers = {k: parse_answer(v) for k, v in answers.items()}
    return getattr(process, mode)(resume=run_id, answers=answers)  # type: ignore[no-any-return]
