"""Paused runs: their pending approval requests and how to continue them.

A run that needs a person and has no one to ask inline pauses. Its requests (with the
output or tool call each asks about) go into a table of their own (``approvals``) in the
run's SQLite checkpoint file, beside the pickled run definition (``paused_runs``), so that
any process (a new driver, ``ray-orch approve``) can answer them and continue the run.
Records are sealed and checked like every checkpoint record; the file is private.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ray_orch.store.checkpoint import open_side_tables, seal, unseal

__all__ = ["PauseStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL, request_id TEXT NOT NULL, task_id TEXT NOT NULL,
    payload TEXT NOT NULL, checksum TEXT NOT NULL, answer TEXT, answer_checksum TEXT,
    asked_at REAL NOT NULL, answered_at REAL,
    PRIMARY KEY (run_id, request_id));
CREATE TABLE IF NOT EXISTS paused_runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, mode TEXT NOT NULL, spec BLOB NOT NULL,
    paused_at REAL NOT NULL);
"""


class PauseStore:
    """The approval requests and paused runs of one checkpoint directory.

    Example:
        >>> import tempfile
        >>> store = PauseStore(tempfile.mkdtemp())
        >>> store.ask("r1", {"id": "q1", "task": "draft", "output": {"raw": "hi"}})
        >>> [r["id"] for r in store.pending("r1")]
        ['q1']
        >>> store.answer("r1", "q1", {"answer": "approve"})
        >>> store.pending("r1")
        []
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path, self.conn = open_side_tables(directory, _SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()

    def ask(self, run_id: str, request: dict[str, Any]) -> None:
        """Record a pending request (``ApprovalRequest.to_dict()``); asking again keeps
        the first record."""
        text, checksum = seal(request)
        with self.lock:
            self.conn.execute(
                "INSERT OR IGNORE INTO approvals (run_id, request_id, task_id, payload, "
                "checksum, asked_at) VALUES (?,?,?,?,?,?)",
                (run_id, request["id"], request["task"], text, checksum, time.time()))

    def answer(self, run_id: str, request_id: str, answer: dict[str, Any]) -> None:
        """Record the answer of a request (``approvals.answer_of``)."""
        text, checksum = seal(answer)
        with self.lock:
            self.conn.execute(
                "UPDATE approvals SET answer=?, answer_checksum=?, answered_at=? "
                "WHERE run_id=? AND request_id=?",
                (text, checksum, time.time(), run_id, request_id))

    def pending(self, run_id: str) -> list[dict[str, Any]]:
        """The requests of ``run_id`` not answered yet, oldest first."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT task_id, payload, checksum FROM approvals WHERE run_id=? AND "
                "answer IS NULL ORDER BY asked_at", (run_id,)).fetchall()
        return [unseal(p, c, "approval request", self.path, run_id=run_id, task_id=t)
                for t, p, c in rows]

    def answered(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The answers given for ``run_id``, by request id."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT request_id, task_id, answer, answer_checksum FROM approvals "
                "WHERE run_id=? AND answer IS NOT NULL", (run_id,)).fetchall()
        return {r: unseal(a, c, "approval answer", self.path, run_id=run_id, task_id=t)
                for r, t, a, c in rows}

    def pause(self, run_id: str, workflow: str, mode: str, spec: bytes) -> None:
        """Keep the definition of a paused run (pickled), to continue it from anywhere."""
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO paused_runs VALUES (?,?,?,?,?)",
                              (run_id, workflow, mode, spec, time.time()))

    def unpause(self, run_id: str) -> None:
        """The run goes on: it is no longer listed as paused."""
        with self.lock:
            self.conn.execute("DELETE FROM paused_runs WHERE run_id=?", (run_id,))

    def paused(self) -> list[dict[str, Any]]:
        """Every paused run: ``run_id``, ``workflow``, ``mode``, ``paused_at`` and its
        pending ``requests``."""
        with self.lock:
            rows = self.conn.execute("SELECT run_id, workflow, mode, paused_at FROM "
                                     "paused_runs ORDER BY paused_at").fetchall()
        return [{"run_id": r, "workflow": w, "mode": m, "paused_at": at,
                 "requests": self.pending(r)} for r, w, m, at in rows]

    def spec(self, run_id: str) -> tuple[str, bytes] | None:
        """``(mode, pickled definition)`` of a paused run, or None."""
        with self.lock:
            row = self.conn.execute("SELECT mode, spec FROM paused_runs WHERE run_id=?",
                                    (run_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))
