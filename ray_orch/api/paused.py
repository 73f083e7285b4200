"""Continuing a paused run from its checkpoint store alone (``ray-orch approve``)."""

from __future__ import annotations

from typing import Any

from ray_orch.api.process import Process
from ray_orch.core.approvals import ApprovalError, parse_answer
from ray_orch.store.pauses import PauseStore

__all__ = ["continue_paused", "paused_process"]


def continue_paused(directory: str, run_id: str, answers: dict[str, Any]) -> dict[str, Any]:
    """Continue a paused run from its checkpoint store alone (``ray-orch approve``): its
    definition was stored when it paused.

    Returns:
        What its ``workflow()`` returns.

    Raises:
        ApprovalError: no paused run ``run_id`` in ``directory``.
        RunPaused: it asks again (another request is pending).
    """
    process, mode = paused_process(directory, run_id)
    answers = {k: parse_answer(v) for k, v in answers.items()}
    return getattr(process, mode)(resume=run_id, answers=answers)  # type: ignore[no-any-return]


def paused_process(directory: str, run_id: str) -> tuple[Process, str]:
    """The ``Process`` of a paused run, rebuilt from the definition its store keeps, and
    the mode it ran in (``continue_paused`` and the viewer continue it with
    ``resume=run_id, answers=...``).

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
    process = Process(tasks=spec.tasks, agents=spec.agents, manager_llm=spec.manager,
                      name=spec.workflow, checkpoint_dir=directory,
                      max_visits=spec.max_visits, max_steps=spec.max_steps,
                      on_failure=spec.on_failure, cache=spec.cache,
                      budget_tokens=spec.budget_tokens, budget_usd=spec.budget_usd,
                      metrics=spec.metrics)
    return process, mode
