"""The guide's checkpoint layout: one JSON file per task, each written atomically.

See :mod:`ray_orch.store.checkpoint` for the protocol it implements and the integrity checks
(checksums, secret scrubbing) every record goes through.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ray_orch.core.errors import ResumeError
from ray_orch.core.secrets import scrub_secrets
from ray_orch.store.checkpoint import (
    RunRecord,
    canonical_json,
    check_drift,
    corrupt_error,
    make_private_dirs,
    open_private,
    sha256_hex,
    unseal,
)

__all__ = ["JsonDirCheckpointStore"]


def _safe_name(name: str) -> str:
    """An injective, traversal-free file name for a run or task id.

    Names starting with ``_`` are reserved for the store's own files.
    """
    quoted = quote(name, safe="")
    if quoted[:1] in ("_", ".", ""):
        quoted = f"%{ord(quoted[0]):02X}{quoted[1:]}" if quoted else "%"
    if len(quoted) > 150:
        quoted = f"{quoted[:100]}~{sha256_hex(name)[:32]}"
    return quoted


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonDirCheckpointStore:
    """The guide's layout: one JSON file per task, ``<directory>/<run_id>/<task_id>.json``.

    Each file is written to a temporary file, fsynced, moved into place with
    ``os.replace`` and the directory fsynced, so a reader sees the old file or the new
    one, never half of one; leftover ``*.tmp`` files of a crash are ignored. Each file
    holds its payload's checksum. Decisions live in ``<run_id>/_decisions/``, loop
    iterations in ``<run_id>/_iterations/<task_id>/``, the run record in
    ``<run_id>/_run.json`` and cache entries in ``<directory>/_cache/``. Writes to one
    file from several processes: the last one wins.

    Args:
        directory: created if missing.

    Example:
        >>> import tempfile
        >>> store = JsonDirCheckpointStore(tempfile.mkdtemp())
        >>> _ = store.begin_run("r1", "demo", "abc")
        >>> store.save_task("r1", "a", {"raw": "done"})
        >>> store.load_tasks("r1")
        {'a': {'raw': 'done'}}
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()
        make_private_dirs(self.directory)
        self.location = str(self.directory)

    def __repr__(self) -> str:
        return f"JsonDirCheckpointStore({self.location!r})"

    def close(self) -> None:
        """Nothing to release: every call opens and closes its files."""

    def _run_dir(self, run_id: str) -> Path:
        return self.directory / _safe_name(run_id)

    def _write(self, path: Path, record: dict[str, Any], payload: Any) -> None:
        clean = scrub_secrets(payload)
        checksum = sha256_hex(canonical_json(clean))
        body = canonical_json({**record, "checksum": checksum, "saved_at": time.time(),
                               "payload": clean})
        self._make_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(open_private(tmp), "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    def _make_dirs(self, folder: Path) -> None:
        # A new directory entry is durable only once its parent is fsynced.
        missing = []
        while not folder.exists() and folder != self.directory:
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            make_private_dirs(created)  # 0700: it holds prompts and outputs
            _fsync_dir(created.parent)

    def _read(self, path: Path, what: str, *, run_id: str | None = None,
              task_id: str | None = None) -> tuple[dict[str, Any], Any] | None:
        """``(record fields, verified payload)`` of one file, or None if it is absent."""
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise corrupt_error(what, path, run_id=run_id, task_id=task_id,
                                why=str(exc)) from exc
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise corrupt_error(what, path, run_id=run_id, task_id=task_id,
                                why=f"unparsable JSON: {exc}") from exc
        if not isinstance(record, dict) or "payload" not in record:
            raise corrupt_error(what, path, run_id=run_id, task_id=task_id, why="not a record")
        # json round-trips floats exactly, so the canonical text is the one checksummed.
        payload = unseal(canonical_json(record["payload"]), record.get("checksum"), what, path,
                         run_id=run_id, task_id=record.get("task_id", task_id))
        return record, payload

    def _records(self, folder: Path, what: str, run_id: str) -> Iterator[tuple[dict[str, Any], Any]]:
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith(("_", ".")) or not path.is_file():
                continue
            found = self._read(path, what, run_id=run_id)
            if found is not None:
                yield found

    def begin_run(self, run_id: str, workflow: str, definition_hash: str,
                  allow_drift: bool = False, *, fresh: bool = False,
                  graph: dict[str, Any] | None = None) -> RunRecord:
        """See :meth:`CheckpointStore.begin_run` (this store keeps no ``graph``)."""
        existing = self.get_run(run_id)
        now = time.time()
        if existing is not None and fresh:
            raise ResumeError(f"run '{run_id}' already has checkpoints in {self.location}")
        if existing is None:
            run = RunRecord(run_id=run_id, workflow=workflow, definition_hash=definition_hash,
                            created_at=now, updated_at=now)
        else:
            check_drift(existing, definition_hash, allow_drift)
            run = existing.model_copy(update={"status": "running", "updated_at": now,
                                              "definition_hash": definition_hash})
        self._write(self._run_dir(run_id) / "_run.json", {"kind": "run", "run_id": run_id},
                    run.model_dump(exclude={"resumed"}))
        return run.model_copy(update={"resumed": existing is not None})

    def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.get_run`."""
        found = self._read(self._run_dir(run_id) / "_run.json", "run record", run_id=run_id)
        return None if found is None else RunRecord.model_validate(found[1])

    def list_runs(self, workflow: str | None = None) -> list[RunRecord]:
        """See :meth:`CheckpointStore.list_runs`."""
        runs = []
        for path in self.directory.glob("*/_run.json"):
            found = self._read(path, "run record")
            if found is not None:
                run = RunRecord.model_validate(found[1])
                if workflow is None or run.workflow == workflow:
                    runs.append(run)
        return sorted(runs, key=lambda r: (r.created_at, r.run_id))

    def latest_run(self, workflow: str) -> RunRecord | None:
        """See :meth:`CheckpointStore.latest_run`."""
        runs = self.list_runs(workflow)
        return runs[-1] if runs else None

    def finish_run(self, run_id: str, status: str) -> None:
        """See :meth:`CheckpointStore.finish_run`."""
        run = self.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r} in {self.location}")
        run = run.model_copy(update={"status": status, "updated_at": time.time()})
        self._write(self._run_dir(run_id) / "_run.json", {"kind": "run", "run_id": run_id},
                    run.model_dump(exclude={"resumed"}))

    def save_task(self, run_id: str, task_id: str, output: dict[str, Any], *,
                  keep: bool = False) -> None:
        """See :meth:`CheckpointStore.save_task`."""
        path = self._run_dir(run_id) / f"{_safe_name(task_id)}.json"
        if keep and path.exists():
            return
        self._write(path, {"kind": "task", "run_id": run_id, "task_id": task_id}, output)

    def load_task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.load_task`."""
        found = self._read(self._run_dir(run_id) / f"{_safe_name(task_id)}.json", "record",
                           run_id=run_id, task_id=task_id)
        return None if found is None else found[1]

    def load_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_tasks`."""
        return {record["task_id"]: payload
                for record, payload in self._records(self._run_dir(run_id), "record", run_id)}

    def save_decision(self, run_id: str, task_id: str, visit: int, route: str) -> None:
        """See :meth:`CheckpointStore.save_decision`."""
        self._write(self._run_dir(run_id) / "_decisions" / f"{_safe_name(task_id)}.{visit}.json",
                    {"kind": "decision", "run_id": run_id, "task_id": task_id, "visit": visit},
                    route)

    def load_decisions(self, run_id: str) -> dict[tuple[str, int], str]:
        """See :meth:`CheckpointStore.load_decisions`."""
        folder = self._run_dir(run_id) / "_decisions"
        return {(record["task_id"], record["visit"]): payload
                for record, payload in self._records(folder, "decision", run_id)}

    def save_iteration(self, run_id: str, task_id: str, index: int,
                       output: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save_iteration`."""
        folder = self._run_dir(run_id) / "_iterations" / _safe_name(task_id)
        self._write(folder / f"{index}.json", {"kind": "iteration", "run_id": run_id,
                                               "task_id": task_id, "index": index}, output)

    def load_iterations(self, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        """See :meth:`CheckpointStore.load_iterations`."""
        folder = self._run_dir(run_id) / "_iterations" / _safe_name(task_id)
        found = {record["index"]: payload
                 for record, payload in self._records(folder, "iteration", run_id)}
        return dict(sorted(found.items()))

    def _cache_path(self, key: str) -> Path:
        return self.directory / "_cache" / f"{_safe_name(key)}.json"

    def cache_get(self, key: str, now: float) -> dict[str, Any] | None:
        """See :meth:`CheckpointStore.cache_get`."""
        found = self._read(self._cache_path(key), f"cache entry {key[:12]}")
        if found is None:
            return None
        expires_at = found[0].get("expires_at")
        return found[1] if expires_at is None or expires_at > now else None

    def cache_put(self, key: str, value: dict[str, Any], expires_at: float | None) -> None:
        """See :meth:`CheckpointStore.cache_put`."""
        self._write(self._cache_path(key), {"kind": "cache", "key": key,
                                            "expires_at": expires_at}, value)

    def cache_delete(self, key: str) -> None:
        """See :meth:`CheckpointStore.cache_delete`."""
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(key).unlink()

    def cache_clear(self) -> None:
        """See :meth:`CheckpointStore.cache_clear`."""
        for path in (self.directory / "_cache").glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
