"""What the run viewer reads and does, as one small interface (``RunSource``).

The server (``ui/server.py``) talks only to a ``RunSource``. Today's source is
``StoreSource`` (``ui/store_source.py``): run stores (SQLite directories, PostgreSQL
databases) plus the runs this process continues. Another kind of source implements the
same methods.

Every snapshot is plain JSON-ready data; the browser shows all of it as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ray_orch.core.approvals import Answer

__all__ = ["STATES", "RunRow", "RunSource"]

STATES = ("running", "paused", "completed", "failed", "cancelled")
"""The states a run is shown in (the runs page filters by them)."""


@dataclass(kw_only=True)
class RunRow:
    """One line of the runs page."""

    run_id: str
    """The run's id."""
    workflow: str
    """The workflow's name."""
    state: str
    """One of :data:`STATES`."""
    started: float
    """When the run was created (Unix time)."""
    ended: float | None
    """When it ended (Unix time), None while it runs or waits."""
    done: int
    """Tasks completed."""
    total: int | None
    """Tasks in the workflow (None when the source has no definition of it)."""
    pending: int
    """Approval requests waiting for a person."""
    where: str
    """Which store holds it (a directory, or a DSN without its password)."""
    requests: list[dict[str, str]]
    """The pending requests: ``id``, ``task`` and a ``preview`` of what is asked."""
    live: bool = False
    """This process drives it now (its events stream live)."""


@runtime_checkable
class RunSource(Protocol):
    """The viewer's reads and actions. Methods are synchronous (the server calls them off
    its event loop) and raise ``RayOrchError`` subclasses on bad input."""

    def list_runs(self) -> list[RunRow]:
        """Every run, newest first."""
        ...

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's snapshot, or None when unknown: ``run_id``, ``workflow``, ``state``,
        ``started``, ``ended``, ``graph`` (``observe.view.graph_data``, or the stored task
        names with ``known: False``), ``tasks`` (by name: ``status``, ``seconds``,
        ``tokens``, ``cost``, ``retries``, ``error``, ``iterations``, ``version``),
        ``routes`` (``[task, route]`` taken), ``pending`` (requests), ``actions``
        (``cancel``, ``resume``: what may be done now), ``events`` (the last ones)."""
        ...

    def task(self, run_id: str, name: str) -> dict[str, Any] | None:
        """One task's story: definition, outputs per visit (raw, structured, metadata:
        tool calls, tokens, cost, timings, decision, approval), iterations (the first
        ones), errors, the live token text, its events."""
        ...

    def version(self, run_id: str) -> Any:
        """A value that changes whenever the run's snapshot may have changed."""
        ...

    def answer(self, run_id: str, request_id: str, answer: Answer) -> None:
        """Answer a pending request and continue the run, as ``ray-orch approve`` does.

        Raises:
            ApprovalError: no such run or request, or an edit its task's schema refuses.
        """
        ...

    def cancel(self, run_id: str) -> bool:
        """Cancel a running run; False when it is not running here."""
        ...

    def resume(self, run_id: str) -> None:
        """Resume a failed or cancelled run from its store.

        Raises:
            ResumeError: the run cannot be resumed (no definition of it, not ended).
        """
        ...

    def close(self) -> None:
        """Release the stores."""
        ...
