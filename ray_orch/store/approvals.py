"""Paused runs: their pending approval requests and how to continue them.

A run that needs a person and has no one to ask inline pauses. Its requests (with the
output or tool call each asks about) and their answers live in the run store
(``approvals``), beside the run's authenticated definition (``definitions``, see
:mod:`ray_orch.store.definitions`), so that any process (a new driver, ``ray-orch
approve``) can answer them and continue the run. Records are sealed and checked like
every checkpoint record.
"""

from __future__ import annotations

from typing import Any

from ray_orch.store.definitions import sign, store_key, verify
from ray_orch.store.port import RunStore

__all__ = ["PauseStore"]


class PauseStore:
    """The approval requests and paused runs of one run store.

    Args:
        store: the run store (:class:`~ray_orch.store.port.RunStore`).

    Example:
        >>> import tempfile
        >>> from ray_orch.store.factory import open_store
        >>> store = PauseStore(open_store(tempfile.mkdtemp()))
        >>> store.ask("r1", {"id": "q1", "task": "draft", "output": {"raw": "hi"}})
        >>> [r["id"] for r in store.pending("r1")]
        ['q1']
        >>> store.answer("r1", "q1", {"answer": "approve"})
        >>> store.pending("r1")
        []
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def ask(self, run_id: str, request: dict[str, Any]) -> None:
        """Record a pending request (``ApprovalRequest.to_dict()``); asking again keeps
        the first record."""
        self.store.save_request(run_id, request)

    def answer(self, run_id: str, request_id: str, answer: dict[str, Any]) -> None:
        """Record the answer of a request (``approvals.answer_of``)."""
        self.store.save_answer(run_id, request_id, answer)

    def pending(self, run_id: str) -> list[dict[str, Any]]:
        """The requests of ``run_id`` not answered yet, oldest first."""
        return self.store.pending_requests(run_id)

    def answered(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The answers given for ``run_id``, by request id."""
        return self.store.answers(run_id)

    def keep_definition(self, run_id: str, workflow: str, mode: str, spec: bytes) -> None:
        """Keep a run's pickled definition, signed with this user's key (a driver calls
        this before a run that may pause starts)."""
        tag = sign(store_key(), run_id=run_id, mode=mode, blob=spec)
        self.store.save_definition(run_id, workflow=workflow, mode=mode, blob=spec, tag=tag)

    def pause(self, run_id: str) -> None:
        """The run waits for answers: list it as paused (its definition was kept)."""
        self.store.set_paused(run_id, True)

    def unpause(self, run_id: str) -> None:
        """The run goes on: it is no longer listed as paused."""
        self.store.set_paused(run_id, False)

    def paused(self) -> list[dict[str, Any]]:
        """Every paused run: ``run_id``, ``workflow``, ``mode``, ``paused_at`` and its
        pending ``requests``."""
        return [{**run, "requests": self.pending(run["run_id"])}
                for run in self.store.paused_runs()]

    def spec(self, run_id: str) -> tuple[str, bytes] | None:
        """``(mode, pickled definition)`` of a stored run, authenticated; None if none.

        Raises:
            StoreIntegrityError: the definition's tag does not match (tampered, or
                signed with another key): nothing may unpickle it.
        """
        found = self.store.load_definition(run_id)
        if found is None:
            return None
        mode, blob, tag = found
        verify(store_key(), run_id=run_id, mode=mode, blob=blob, tag=tag,
               location=self.store.location)
        return mode, blob

