"""Checkpoints: the store protocol, the run record and the integrity of stored payloads.

A run's checkpoint holds each completed task's output, each decision taken (per visit of
a decision task) and each loop iteration, so that a resumed run skips finished work.
Records are keyed by ``(run_id, task_id)``, never by position, so a resumed run cannot
replay one task's output onto another.

:class:`CheckpointStore` (the journal) and :class:`CacheStore` (the result cache's
persistence) are parts of the run store port, :class:`~ray_orch.store.port.RunStore`,
which the SQLite and PostgreSQL backends implement whole. :class:`JsonDirCheckpointStore`
(``store/jsondir.py``) implements the journal's part only: the guide's file-per-task
layout, each file written through a temporary file, fsync, ``os.replace`` and an fsync
of the directory.

Every payload is stored with the SHA-256 of its canonical JSON and checked on load: a
torn or tampered record raises :class:`~ray_orch.core.errors.CheckpointCorruptError` and is
never returned. Every payload passes through :func:`scrub_secrets` (``core/secrets.py``)
before it is written. :func:`seal` and :func:`unseal` do both for the stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ray_orch.core.errors import CheckpointCorruptError, ResumeError
from ray_orch.core.secrets import scrub_secrets

__all__ = [
    "CacheStore",
    "CheckpointStore",
    "RunRecord",
    "canonical_json",
    "definition_hash",
    "new_run_id",
    "string_keys",
]


# --------------------------------------------------------------------------- helpers


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` that checksums and keys are computed over.

    Example:
        >>> canonical_json({"b": 1, "a": [1, 2]})
        '{"a":[1,2],"b":1}'
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError:
        # Keys of mixed types (a None key from a ragged CSV row next to str keys) cannot be
        # sorted: the same keys as JSON writes them (strings) can.
        obj = string_keys(obj)
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (any Python string may hold one) has no UTF-8 form: escape it.
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text


def string_keys(obj: Any) -> Any:
    """``obj`` with every dict key a string (non-string keys as their JSON text)."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else json.dumps(k, default=str): string_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [string_keys(v) for v in obj]
    return obj


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8 (the checksum stored with a payload)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def make_private_dirs(folder: str | os.PathLike[str]) -> list[Path]:
    """Create ``folder`` and its missing parents, each readable by this user only (0700,
    whatever the umask). Checkpoints hold every prompt and output.

    Returns:
        The directories created, outermost first.
    """
    missing: list[Path] = []
    path = Path(folder)
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(created, 0o700)
    return list(reversed(missing))


def open_private(path: str | os.PathLike[str]) -> int:
    """Create (exclusively) a file only this user can read or write (0600): a descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # the umask cannot have widened it, but may have narrowed it
    return fd


def definition_hash(definition: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a workflow definition.

    Args:
        definition: a plain, JSON-serialisable dict describing the workflow (task names,
            descriptions, types, edges, schemas, agent roles and models).

    Returns:
        64 hex digits; equal definitions (whatever their key order) hash equal.

    Raises:
        TypeError: when ``definition`` holds a value JSON cannot represent.

    Example:
        >>> definition_hash({"a": 1, "b": 2}) == definition_hash({"b": 2, "a": 1})
        True
    """
    return sha256_hex(canonical_json(definition))


def new_run_id() -> str:
    """A fresh run id: UTC time (sortable) plus 6 random hex digits.

    Example:
        >>> len(new_run_id().split("-"))
        3
    """
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


# --------------------------------------------------------------------------- integrity


def seal(payload: Any) -> tuple[str, str]:
    """Scrub, serialise and checksum a payload: ``(canonical text, sha256)``."""
    text = canonical_json(scrub_secrets(payload))
    return text, sha256_hex(text)


def corrupt_error(what: str, path: str | os.PathLike[str], *, run_id: str | None = None,
                  task_id: str | None = None, why: str) -> CheckpointCorruptError:
    """The error for a damaged record: names the run, the task, the file and why."""
    where = " ".join(part for part in (
        f"run {run_id!r}" if run_id is not None else "",
        f"task {task_id!r}" if task_id is not None else "") if part)
    return CheckpointCorruptError(
        f"checkpoint {what}{' of ' + where if where else ''} in {os.fspath(path)} is corrupt "
        f"({why}); it was not loaded. Delete the file or start a new run (a new run id).",
        run_id=run_id, task=task_id, path=os.fspath(path))


def unseal(text: Any, checksum: Any, what: str, path: str | os.PathLike[str], *,
           run_id: str | None = None, task_id: str | None = None) -> Any:
    """Verify a stored payload against its checksum and parse it."""
    if not isinstance(text, str) or not isinstance(checksum, str):
        raise corrupt_error(what, path, run_id=run_id, task_id=task_id, why="record incomplete")
    if sha256_hex(text) != checksum:
        raise corrupt_error(what, path, run_id=run_id, task_id=task_id, why="checksum mismatch")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise corrupt_error(what, path, run_id=run_id, task_id=task_id,
                            why=f"unparsable JSON: {exc}") from exc


# --------------------------------------------------------------------------- protocol


class RunRecord(BaseModel):
    """What a store knows about one run.

    Attributes:
        run_id: the run's stable id.
        workflow: the workflow's name.
        definition_hash: :func:`definition_hash` of the workflow the run executes.
        status: ``"running"``, then what :meth:`CheckpointStore.finish_run` set
            (``"completed"``, ``"failed"``, ``"cancelled"``).
        created_at, updated_at: Unix times.
        resumed: True when :meth:`CheckpointStore.begin_run` found the run already there.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    definition_hash: str
    status: str = "running"
    created_at: float
    updated_at: float
    resumed: bool = False


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a run's durable state lives. Other backends implement the same methods.

    Every ``save_*`` scrubs secrets (:func:`scrub_secrets`) and is atomic and durable
    when it returns; every ``load_*`` verifies checksums and raises
    :class:`~ray_orch.core.errors.CheckpointCorruptError` rather than return a damaged record.

    Example:
        >>> import tempfile
        >>> from ray_orch.store.sqlite import SQLiteRunStore
        >>> store = SQLiteRunStore(tempfile.mkdtemp())
        >>> run = store.begin_run("r1", "demo", definition_hash({"tasks": ["a"]}))
        >>> store.save_task("r1", "a", {"raw": "done", "task_id": "a"})
        >>> store.load_tasks("r1")["a"]["raw"]
        'done'
    """

    location: str
    """Path of the store (file or directory), for messages."""

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False, *, fresh: bool = False,
                  graph: dict[str, Any] | None = None) -> RunRecord:
        """Create the run, or reopen it for resuming.

        Args:
            run_id: the run's id (:func:`new_run_id` for a new run).
            workflow: the workflow's name.
            definition_hash: :func:`definition_hash` of the current workflow.
            allow_drift: accept a changed definition when resuming; the stored hash is
                then replaced by the new one.
            fresh: the run must be new (ResumeError if it exists), checked atomically.
            graph: the run's definition for readers (``RunStore.save_graph``), kept with
                the run (one commit in the SQL stores).

        Returns:
            The run's record; ``resumed`` tells whether it existed already (its status
            is set back to ``"running"``).

        Raises:
            ResumeError: the run exists with another definition hash and not allow_drift.
            CheckpointCorruptError: the store is damaged.

        Example:
            >>> store.begin_run("r1", "demo", "abc").resumed  # doctest: +SKIP
            False
        """
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when the store has no such run."""
        ...

    def latest_run(self, workflow: str) -> RunRecord | None:
        """The most recently created run of ``workflow``, or None."""
        ...

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """All runs (of ``workflow`` when given), oldest first."""
        ...

    def finish_run(self, run_id: str, status: str) -> None:
        """Record the run's final status.

        Raises:
            KeyError: no such run.
        """
        ...

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any], *,
                  keep: bool = False) -> None:
        """Persist a completed task's output (``TaskOutput.model_dump(mode="json")``).

        A later save for the same task (a task visited again in a cycle) replaces it;
        with ``keep``, a record already there stays (a member's record of an output it
        hands on never replaces the Supervisor's).
        """
        ...

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """One task's saved output, or None."""
        ...

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every saved task output of the run, by task id.

        Raises:
            CheckpointCorruptError: a record failed its integrity check (names run, task
                and file); nothing is returned.
        """
        ...

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """Persist the route a decision task took on its ``visit``-th run (from 0 or 1)."""
        ...

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """Every decision taken in the run, keyed by ``(task_id, visit)``."""
        ...

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """Persist loop iteration ``index`` of a loop task."""
        ...

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """The saved iterations of one loop task, by index."""
        ...

    def close(self) -> None:
        """Release open handles; the store reopens them if used again."""
        ...


@runtime_checkable
class CacheStore(Protocol):
    """Where the result cache persists its entries (both checkpoint stores implement it,
    in a table or folder of their own; the journal never reads it)."""

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """The cached value under ``key`` if it has not expired at ``now`` (Unix time).

        Raises:
            CheckpointCorruptError: the entry failed its integrity check.
        """
        ...

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """Store ``value`` under ``key`` until ``expires_at`` (None: no expiry)."""
        ...

    def cache_delete(self, key: str) -> None:
        """Forget one cache entry (no error when absent)."""
        ...

    def cache_clear(self) -> None:
        """Forget every cache entry."""
        ...

    def close(self) -> None:
        """Release open handles; the store reopens them if used again."""
        ...


def check_drift(existing: RunRecord, new_hash: str, allow_drift: bool) -> None:
    """Raise ResumeError when a run is resumed under a changed definition, unless allowed."""
    if existing.definition_hash != new_hash and not allow_drift:
        raise ResumeError(
            f"cannot resume run {existing.run_id!r}: it was checkpointed with workflow "
            f"definition {existing.definition_hash} but the workflow now hashes to "
            f"{new_hash}; tasks, edges, schemas or agents changed since. Pass "
            f"allow_drift=True to resume anyway (saved outputs are reused by task id), or "
            f"start a new run.")
