"""``StoreSource``: the viewer's ``RunSource`` over run stores (SQLite directories and
PostgreSQL databases, each opened through ``store.factory.open_store``), plus the runs
this process drives (``LiveRun``).

A run's graph comes from its definition: the plain one its journal keeps in the store
(``RunStore.load_graph``); for a paused run kept before that, its paused run's (the
signed, pickled run the driver keeps with its requests); a run this process continued
keeps its ``Process``. A run of which no definition is at hand is drawn as its stored
tasks.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ray_orch.core.approvals import Answer, ApprovalError, Edit
from ray_orch.core.errors import ResumeError
from ray_orch.core.output import TaskOutput
from ray_orch.core.secrets import redact_dsn
from ray_orch.store.approvals import PauseStore
from ray_orch.store.checkpoint import RunRecord
from ray_orch.store.factory import is_postgres, open_store
from ray_orch.store.sqlite import SQLITE_FILENAME
from ray_orch.ui.live import LiveRun
from ray_orch.ui.source import RunRow

__all__ = ["StoreSource"]

_ITERATIONS_SHOWN = 100
_ENDED = ("completed", "failed", "cancelled")


@dataclass(kw_only=True)
class _Definition:
    """What the viewer knows of a run's definition."""

    graph: dict[str, Any]
    """``observe.view.graph_data`` of it."""
    tasks: dict[str, dict[str, Any]]
    """Its tasks by name, as plain data: ``description``, ``expected_output``, ``type``,
    ``agent``, ``human_input``, ``schema`` (JSON schema of a structured output)."""
    process: Any = None
    """The ``Process`` to resume it with (None: only continued through its pause)."""
    mode: str = "workflow"
    """The mode it runs in."""


@dataclass(kw_only=True)
class _Store:
    """One run store the viewer reads."""

    spec: str
    """The spec it was opened from (a DSN may hold a password: never shown)."""
    where: str
    """How it is shown: a directory, or a DSN without its password."""
    runs: Any
    """The :class:`~ray_orch.store.port.RunStore`."""
    pauses: PauseStore
    """Its approval requests and paused runs."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while a run of it is answered or resumed."""


def _where(spec: str) -> str:
    """How a spec is shown: a DSN without its password, a directory absolute."""
    if is_postgres(spec):
        return redact_dsn(spec)
    return os.path.abspath(spec.removeprefix("sqlite://") or ".")


class StoreSource:
    """Runs of one or more run stores (``Process(store=...)`` / ``checkpoint_dir=``).

    Args:
        specs: store specs: directories (or ``sqlite:///dir``), watched until their
            store file appears (nothing is created), and ``postgresql://`` DSNs.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = open_store(folder).begin_run("r1", "demo", "abc")
        >>> source = StoreSource([folder])
        >>> [(row.run_id, row.workflow, row.state) for row in source.list_runs()]
        [('r1', 'demo', 'running')]
        >>> source.close()
    """

    def __init__(self, specs: list[str]) -> None:
        self.specs = [s if is_postgres(s) else _where(s) for s in specs]
        self.wheres = [_where(s) for s in specs]
        self.stores: dict[str, _Store] = {}
        self.live: dict[str, LiveRun] = {}
        self.definitions: dict[str, _Definition] = {}
        self.done_counts: dict[str, tuple[Any, int]] = {}
        self.snapshots: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.warming: Future[None] | None = None
        self.lock = threading.Lock()

    # -- stores ------------------------------------------------------------------------

    def _open(self) -> list[_Store]:
        with self.lock:
            for spec, where in zip(self.specs, self.wheres, strict=True):
                if spec in self.stores:
                    continue
                if not is_postgres(spec) and not os.path.exists(
                        os.path.join(spec, SQLITE_FILENAME)):
                    continue  # not written yet: a viewer creates no store
                runs = open_store(spec)
                self.stores[spec] = _Store(spec=spec, where=where, runs=runs,
                                           pauses=PauseStore(runs))
            return list(self.stores.values())

    def _find(self, run_id: str) -> tuple[_Store, RunRecord] | None:
        for folder in self._open():
            record = folder.runs.get_run(run_id)
            if record is not None:
                return folder, record
        return None

    def close(self) -> None:
        """Cancel the runs this process drives (completed results are kept) and close
        every store."""
        for live in list(self.live.values()):
            if live.active:
                live.cancel()
        with self.lock:
            for folder in self.stores.values():
                folder.runs.close()
            self.stores.clear()

    # -- definitions -------------------------------------------------------------------

    def _definition(self, folder: _Store, run_id: str, workflow: str) -> _Definition | None:
        """The run's definition: the one this process ran it with, the one its journal
        keeps, or (a run paused before definitions were kept) its paused run's."""
        known = self.definitions.get(run_id)
        if known is not None:
            return known
        stored = folder.runs.load_graph(run_id)
        if stored is not None:
            from ray_orch.observe.view import graph_of_definition

            known = _Definition(graph=graph_of_definition(stored, workflow),
                                tasks={name: _plain_task(task) for name, task in
                                       (stored.get("tasks") or {}).items()},
                                mode=stored.get("mode", "workflow"))
        elif folder.pauses.spec(run_id) is not None:
            process, mode = _paused_process(folder.spec, run_id)
            known = _define(process, mode, keep=False)
        else:
            return None
        self.definitions[run_id] = known
        return known

    # -- reads -------------------------------------------------------------------------

    def list_runs(self) -> list[RunRow]:
        """See ``RunSource.list_runs``."""
        rows = []
        for folder in self._open():
            for record in folder.runs.list_runs():
                rows.append(self._row(folder, record))
        rows.sort(key=lambda row: row.started, reverse=True)
        return rows

    def _row(self, folder: _Store, record: RunRecord) -> RunRow:
        live = self.live.get(record.run_id)
        state, ended = _state(record, live)
        done = self._done(folder, record, state)
        definition = self._definition(folder, record.run_id, record.workflow)
        total = len(definition.graph["nodes"]) if definition else None
        pending = folder.pauses.pending(record.run_id)
        return RunRow(run_id=record.run_id, workflow=record.workflow, state=state,
                      started=record.created_at, ended=ended, done=done, total=total,
                      pending=len(pending), where=folder.where,
                      requests=[{"id": r["id"], "task": r["task"], "preview": _preview(r)}
                                for r in pending if state == "paused"],
                      live=bool(live and live.active))

    def _done(self, folder: _Store, record: RunRecord, state: str) -> int:
        """How many tasks completed; counted once for a run that waits or ended."""
        key = (record.updated_at, state)
        cached = self.done_counts.get(record.run_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        done = len({k.partition("#")[0] for k in folder.runs.load_tasks(record.run_id)})
        if state != "running":
            self.done_counts[record.run_id] = (key, done)
        return done

    def version(self, run_id: str) -> Any:
        """See ``RunSource.version``: a live run's counter; None (unknown) otherwise."""
        live = self.live.get(run_id)
        return None if live is None else (live.version, live.state, live.ended)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """See ``RunSource.run``. A run that waits or ended, and that this process does
        not drive, is read once (until its record changes)."""
        found = self._find(run_id)
        if found is None:
            return None
        folder, record = found
        live = self.live.get(run_id)
        key = (record.updated_at, record.status)
        cached = self.snapshots.get(run_id)
        if live is None and cached is not None and cached[0] == key:
            return cached[1]
        snapshot = self._snapshot(folder, record, live)
        if live is None and record.status != "running":
            self.snapshots[run_id] = (key, snapshot)
        return snapshot

    def _snapshot(self, folder: _Store, record: RunRecord, live: LiveRun | None
                  ) -> dict[str, Any]:
        run_id = record.run_id
        now = live.snapshot() if live else None
        state, ended = _state(record, live)
        definition = self._definition(folder, run_id, record.workflow)
        stored = folder.runs.load_tasks(run_id)
        graph = definition.graph if definition else _stored_graph(stored)
        pending = [self._request_view(definition, r) for r in folder.pauses.pending(run_id)]
        tasks = self._task_rows(folder, run_id, graph, stored, now, state)
        for request in pending:
            if tasks.get(request["task"], {}).get("status") != "running":
                tasks.setdefault(request["task"], {})["status"] = "paused"
        routes = [[task, route] for (task, _), route in
                  sorted(folder.runs.load_decisions(run_id).items())]
        for route in (now or {}).get("routes", []):
            if route not in routes:
                routes.append(route)
        can_resume = (state in ("failed", "cancelled") and definition is not None
                      and definition.process is not None and not (live and live.active))
        return {"run_id": run_id, "workflow": record.workflow, "state": state,
                "started": record.created_at, "ended": ended, "where": folder.where,
                "graph": {**graph, "known": definition is not None}, "tasks": tasks,
                "routes": routes, "pending": pending,
                "error": now["error"] if now else None,
                "actions": {"cancel": bool(live and live.active), "resume": can_resume},
                "events": now["events"] if now else []}

    def _task_rows(self, folder: _Store, run_id: str, graph: dict[str, Any],
                   stored: dict[str, dict[str, Any]], now: dict[str, Any] | None,
                   state: str) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for node in graph["nodes"]:
            name = node["id"]
            visits = _visits(stored, name)
            last = visits[-1] if visits else None
            meta = (last or {}).get("metadata") or {}
            status = "completed" if last else ("skipped" if state == "completed" else "pending")
            done = last.get("iterations") if last else None
            iterations = len(done) if done is not None else None
            if last is None and node.get("type") == "loop":
                if now is not None:
                    iterations = now["iterations"].get(name)
                else:
                    iterations = len(folder.runs.load_iterations(run_id, name)) or None
            row = {"status": status, "visits": len(visits), "seconds":
                   meta.get("execution_time"), "tokens": meta.get("tokens_used"),
                   "cost": meta.get("cost_usd"), "retries": meta.get("retry_count"),
                   "iterations": iterations, "error": None, "version": 0}
            if now is not None:
                live_status = now["statuses"].get(name)
                if live_status and not (live_status == "pending" and last):
                    row["status"] = live_status
                row["error"] = now["errors"].get(name)
                row["version"] = now["versions"].get(name, 0)
                row["retries"] = row["retries"] or now["retries"].get(name)
            rows[name] = row
        return rows

    def _request_view(self, definition: _Definition | None,
                      request: dict[str, Any]) -> dict[str, Any]:
        task = definition.tasks.get(request["task"]) if definition else None
        return {**request, "schema": task.get("schema") if task else None}

    def task(self, run_id: str, name: str) -> dict[str, Any] | None:
        """See ``RunSource.task``."""
        found = self._find(run_id)
        if found is None:
            return None
        folder, record = found
        definition = self._definition(folder, run_id, record.workflow)
        stored = folder.runs.load_tasks(run_id)
        task = definition.tasks.get(name) if definition else None
        if task is None and not _visits(stored, name):
            return None
        outputs = [_output_view(o) for o in _visits(stored, name)]
        iterations: list[dict[str, Any]] = []
        if not outputs and task is not None and task.get("type") == "loop":
            done = folder.runs.load_iterations(run_id, name)
            iterations = [_output_view({**done[i], "index": i}) for i in sorted(done)]
        live = self.live.get(run_id)
        view = live.task_view(name) if live else {"tokens": "", "events": []}
        return {"name": name, "definition": task,
                "outputs": outputs, "iterations": iterations[:_ITERATIONS_SHOWN],
                "iterations_count": len(iterations),
                "pending": [r for r in folder.pauses.pending(run_id) if r["task"] == name],
                "prompt": None, **view}

    # -- actions -----------------------------------------------------------------------

    def answer(self, run_id: str, request_id: str, answer: Answer) -> None:
        """See ``RunSource.answer``: ``api.paused`` rebuilds the run from its stored
        definition and this process continues it with ``answers={request_id: answer}``."""
        found = self._find(run_id)
        if found is None:
            raise ApprovalError(f"no run {run_id!r} in {', '.join(self.wheres)}", field="run")
        folder, _ = found
        with folder.lock:
            live = self.live.get(run_id)
            if live is not None and live.active:
                raise ApprovalError(f"run {run_id} is running; its requests are answered "
                                    "when it pauses", field="run")
            pending = {r["id"]: r for r in folder.pauses.pending(run_id)}
            request = pending.get(request_id)
            if request is None:
                known = ", ".join(sorted(pending)) or "none"
                raise ApprovalError(f"run {run_id} has no pending request {request_id!r} "
                                    f"(pending: {known})", field="request",
                                    request_id=request_id)
            process, mode = _paused_process(folder.spec, run_id)
            if isinstance(answer, Edit):
                _check_edit(process, request, answer)
            self.definitions[run_id] = _define(process, mode, keep=True)
            self._drive(run_id, process, mode, {"resume": run_id,
                                                "answers": {request_id: answer}})

    def resume(self, run_id: str) -> None:
        """See ``RunSource.resume``."""
        found = self._find(run_id)
        if found is None:
            raise ResumeError(f"no run {run_id!r} in {', '.join(self.wheres)}")
        folder, record = found
        with folder.lock:
            state, _ = _state(record, self.live.get(run_id))
            definition = self.definitions.get(run_id)
            if state not in ("failed", "cancelled"):
                raise ResumeError(f"run {run_id} is {state}: only a failed or cancelled run "
                                  "is resumed")
            if definition is None or definition.process is None:
                raise ResumeError(f"run {run_id}: this viewer has no definition of it to "
                                  "resume it with (run its driver with resume=...)")
            self._drive(run_id, definition.process, definition.mode, {"resume": run_id})

    def cancel(self, run_id: str) -> bool:
        """See ``RunSource.cancel``: a run this process drives."""
        live = self.live.get(run_id)
        if live is None or not live.active:
            return False
        threading.Thread(target=live.cancel, name=f"ui-cancel-{run_id}", daemon=True).start()
        return True

    def prewarm(self) -> None:
        """When a run waits for an answer, connect this process to Ray now, in the
        background, so that an answer continues the run without waiting for Ray to
        start (a run started before it is ready waits for it). Ray starts on the
        long-lived loop runs are driven from: a process Ray starts dies with the thread
        that started it."""
        import asyncio

        from ray_orch.core.sync import background_loop

        async def warm() -> None:
            if not any(row.state == "paused" for row in self.list_runs()):
                return
            from actors.registry import get_registry
            from ray_orch.api.runtime import ensure_ray

            with contextlib.suppress(Exception):  # a failure shows as the run's error
                ensure_ray()
                get_registry()

        self.warming = asyncio.run_coroutine_threadsafe(warm(), background_loop())

    def _drive(self, run_id: str, process: Any, mode: str, kwargs: dict[str, Any]) -> None:
        live = LiveRun(process, mode, run_id=run_id, run_kwargs=kwargs, after=self.warming)
        self.live[run_id] = live
        live.start()


# -- helpers ------------------------------------------------------------------------------


def _paused_process(spec: str, run_id: str) -> tuple[Any, str]:
    from ray_orch.api.paused import paused_process

    return paused_process(spec, run_id)


def _define(process: Any, mode: str, *, keep: bool) -> _Definition:
    from ray_orch.observe.view import graph_data

    tasks = {}
    for task in process.task_list:
        schema = task.output_schema()
        tasks[task.id] = {"description": task.description,
                          "expected_output": task.expected_output, "type": task.task_type,
                          "agent": task.agent_role,
                          "human_input": bool(getattr(task, "human_input", False)),
                          "schema": schema.model_json_schema() if schema else None}
    return _Definition(graph=graph_data(process, mode),  # type: ignore[arg-type]
                       tasks=tasks, process=process if keep else None, mode=mode)


def _plain_task(stored: dict[str, Any]) -> dict[str, Any]:
    """A task of a stored definition, as ``_Definition.tasks`` holds it."""
    agent = stored.get("agent")
    return {"description": stored.get("description"),
            "expected_output": stored.get("expected_output"), "type": stored.get("type"),
            "agent": agent.get("role") if isinstance(agent, dict) else agent,
            "human_input": None, "schema": stored.get("schema")}


def _check_edit(process: Any, request: dict[str, Any], answer: Edit) -> None:
    """An edit is checked before the run goes on: a tool call's arguments are an object;
    an output fits its task's schema (``engine.approvals.edited`` applies it so)."""
    from ray_orch.engine.approvals import edited

    name = request["task"]
    if request.get("tool"):
        if not isinstance(answer.value, dict):
            raise ApprovalError(f"task '{name}': an edit of the call to {request['tool']} "
                                "gives its arguments as a JSON object", task=name,
                                field="value", request_id=request["id"])
        return
    task = next((t for t in process.task_list if t.id == name), None)
    if task is None or request.get("output") is None:
        return
    try:
        edited(task, TaskOutput.model_validate(request["output"]), answer)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        schema = task.output_schema()
        raise ApprovalError(f"task '{name}': the edit does not fit its output schema "
                            f"{schema.__name__ if schema else ''}: {exc}", task=name,
                            field="value", request_id=request["id"]) from None


def _state(record: RunRecord, live: LiveRun | None) -> tuple[str, float | None]:
    """The store's status, but "running" while this process drives the run (the store
    says "paused" until the continued run has begun)."""
    if live is not None and live.active:
        return "running", None
    ended = record.updated_at if record.status in _ENDED else None
    return record.status, ended


def _preview(request: dict[str, Any]) -> str:
    if request.get("tool"):
        return f"{request['tool']}({request.get('arguments')})"[:200]
    return str((request.get("output") or {}).get("raw") or "")[:200]


def _visits(stored: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    keys = [k for k in stored if k == name or k.startswith(name + "#")]
    keys.sort(key=lambda k: int(k.partition("#")[2] or 1))
    return [stored[k] for k in keys]


def _stored_graph(stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = sorted({k.partition("#")[0] for k in stored},
                   key=lambda n: stored.get(n, {}).get("metadata", {})
                   .get("started_at") or 0)
    return {"name": "", "mode": "workflow", "edges": [],
            "nodes": [{"id": n, "type": "task", "role": None, "note": None, "tools": None,
                       "description": ""} for n in names]}


def _output_view(output: dict[str, Any]) -> dict[str, Any]:
    iterations = output.get("iterations") or []
    return {**{k: v for k, v in output.items() if k != "iterations"},
            "iterations": [_output_view({**it, "index": i}) for i, it in
                           enumerate(iterations[:_ITERATIONS_SHOWN])],
            "iterations_count": len(iterations)}
