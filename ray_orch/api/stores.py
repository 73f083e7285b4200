"""The driver's side of the run store: open and check it before Ray starts, ship a
handle that reaches it from any node, keep a pausable run's signed definition."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ray_orch.core.errors import ResumeError

if TYPE_CHECKING:
    from ray_orch.engine.runspec import RunSpec

__all__ = ["keep_definition", "latest_run_id", "run_store", "shipped"]

def opened(spec: str) -> Any:
    """The store ``spec`` names, opened and checked once per driver process.

    Raises:
        StoreError: a bad DSN or directory, an unreachable, read-only or full store.
    """
    from ray_orch.store.factory import opened_store

    return opened_store(spec, check=True)


def run_store(process: Any) -> Any:
    """The run store of ``process`` (``Process(store=...)``, ``checkpoint_dir=``,
    ``$RAY_ORCH_STORE``), checked; None when it has none."""
    spec = getattr(process, "store", None)
    return opened(spec) if spec else None


def latest_run_id(store: Any, workflow: str) -> str:
    """The id of the latest run of ``workflow`` in ``store`` (``resume=True``).

    Raises:
        ResumeError: the store holds no run of it.
    """
    record = store.latest_run(workflow)
    if record is None:
        raise ResumeError(f"no run of workflow '{workflow}' to resume in {store.location}")
    return str(record.run_id)


def shipped(store: Any) -> Any:
    """The handle of ``store`` that a run's Supervisor and members use (Ray connected):
    a PostgreSQL store itself, an SQLite store routed through its node."""
    from actors.store_service import route

    return route(store)


def keep_definition(store: Any, spec: RunSpec, packed: bytes) -> None:
    """Keep a run that may pause: its pickled spec, signed with this user's key, so that
    ``ray-orch approve`` can continue it (and refuses a changed one). ``packed`` is
    pickled for storage (``core.secrets.storing``): API keys are kept as references to
    the variables they came from, never their values, and read again when it continues."""
    from ray_orch.store.approvals import PauseStore

    PauseStore(store).keep_definition(spec.run_id, spec.workflow, spec.mode, packed)


_job_runs = [0]


def job_run_id() -> str | None:
    """Inside a detached run's job (``$RAY_ORCH_RUN_ID``): the id its next run takes, so
    that the job, the store, ``runs`` and ``logs`` share one id (a script's later runs
    get ``-2``, ``-3`` ...); None elsewhere."""
    base = os.environ.get("RAY_ORCH_RUN_ID")
    if not base:
        return None
    _job_runs[0] += 1
    return base if _job_runs[0] == 1 else f"{base}-{_job_runs[0]}"
