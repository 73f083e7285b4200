"""Detached runs: workflows submitted to the cluster as Ray jobs, which continue after
the submitting driver exits.

``ray-orch submit FILE.py|FILE.yaml`` and ``Process.workflow(detach=True)`` submit
through Ray's Job Submission API (the dashboard that ``ray-orch up`` starts on
127.0.0.1). The job's id is the run id. The job's driver runs the workflow like any
driver on the standing runtime (warm pools, a journal, a new Supervisor if one is
lost) and stores its results by run id: as the last line of the job's log
(``RESULT_MARKER`` + JSON, kept by Ray with the job) and in the runtime's run store
(``results`` table; ``ray-orch up --store``, else a directory beside the runtime file).
The job's id, the run's id in the store and in its events are one id. ``ray-orch runs`` / ``logs`` / ``cancel`` /
``attach`` and ``DetachedRun`` read them back.

The job's driver writes one line per event of its run into the job's log (``event_line``:
run and tasks started, finished, routed, waiting), which ``logs`` prints and ``attach``
streams. Its Supervisor journals the run in the runtime's run store whether or not the
job's driver lives: a job whose driver died (killed, out of memory) without storing a
report is shown as its journal says (``journal_report``): completed when its Supervisor
finished it, followed by ``attach`` while it still runs.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_orch.api.supervisors import detach_schemas, new_run_id
from ray_orch.core.errors import RayOrchError, RunCancelledError, RunError
from ray_orch.core.output import TaskOutput

__all__ = [
    "RESULT_MARKER",
    "DetachedRun",
    "StandingRuntimeError",
    "attach_run",
    "cancel_run",
    "detach",
    "event_line",
    "journal_report",
    "list_runs",
    "run_logs",
    "submit_file",
]

RESULT_MARKER = "RAY_ORCH_RESULT "
RUN_ID_ENV = "RAY_ORCH_RUN_ID"
_KV_NAMESPACE = "ray_orch"
_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class StandingRuntimeError(RayOrchError):
    """The standing runtime (or a run on it) cannot be reached or found."""

    run_id: str | None = None
    """The run concerned, if any."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


def _dashboard(address: str | None) -> str:
    from ray_orch.api.standing import discover

    if address:
        return address if "://" in address else f"http://{address}"
    info = discover()
    deadline = time.monotonic() + 180
    while info is not None and info.extra.get("dashboard") == "starting" \
            and time.monotonic() < deadline:
        time.sleep(0.2)  # a self-started runtime's dashboard comes up after its first run
        info = discover()
    if info is not None and str(info.extra.get("dashboard", "")).startswith("failed"):
        raise StandingRuntimeError(f"the runtime's Ray dashboard, which job submission "
                                   f"needs, {info.extra['dashboard']}")
    if info is None or not info.dashboard_url:
        raise StandingRuntimeError(
            "no ray-orch runtime with a dashboard is up: start one with `ray-orch up` (or "
            "give --address http://HOST:8265 of a Ray dashboard)")
    return info.dashboard_url


def _client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    url = _dashboard(address)
    try:
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError) as exc:
        raise StandingRuntimeError(f"cannot reach the Ray dashboard at {url}: {exc}") from None


def _job_env(run_id: str, store: str | None = None) -> dict[str, str]:
    from ray_orch.api.standing import runtime_file

    env = {RUN_ID_ENV: run_id, "RAY_ORCH_PROGRESS": "0",
           "RAY_ORCH_RUNTIME_FILE": str(runtime_file())}
    if store:
        from ray_orch.store.factory import STORE_ENV

        env[STORE_ENV] = store
    return env


def submit_file(file: Path, *, address: str | None = None,
                variables: dict[str, str] | None = None, store: str | None = None) -> str:
    """Submit a ``.py`` driver script or a ``.yaml`` workflow as a detached run.

    Args:
        file: the script or workflow file.
        address: the dashboard (job submission) address; default: the standing runtime's.
        variables: environment variables for the job: for a YAML workflow, those it
            names as the submitting shell has them (``yaml_workflow.shell_variables``
            checks the file first; ``ray-orch submit`` passes them).
        store: the run's store (the job's ``$RAY_ORCH_STORE``), checked here.

    Returns:
        The run id (the Ray job's submission id).

    Raises:
        StoreError: ``store`` cannot be used (nothing was submitted).
    """
    path = file.resolve()
    if store:
        from ray_orch.store.factory import open_store

        open_store(store, check=True).close()
    run_id = new_run_id()
    command = (f"cd {shlex.quote(str(path.parent))} && {shlex.quote(sys.executable)} -m "
               f"ray_orch.cli job-run {shlex.quote(str(path))} --run-id {run_id}")
    env = {**(variables or {}), **_job_env(run_id, store)}
    _client(address).submit_job(
        entrypoint=command, submission_id=run_id,
        runtime_env={"env_vars": env},
        metadata={"ray-orch": "1", "file": str(path)})
    return run_id


def list_runs(*, address: str | None = None) -> list[dict[str, Any]]:
    """Every detached run on the cluster, oldest first: run id, status, entrypoint."""
    rows = []
    for job in _client(address).list_jobs():
        if (job.metadata or {}).get("ray-orch") != "1" or not job.submission_id:
            continue
        what = job.metadata.get("file") or job.metadata.get("workflow") or job.entrypoint
        status = str(job.status)
        report = run_report(job.submission_id, status)
        state, error = true_state(status, report, job.message)
        rows.append({"run_id": job.submission_id, "status": state, "job_status": status,
                     "error": error, "entrypoint": what, "start_time": job.start_time,
                     "end_time": job.end_time, "message": job.message})
    return sorted(rows, key=lambda r: r["start_time"] or 0)


def true_state(job_status: str, report: dict[str, Any] | None,
               message: str | None = None) -> tuple[str, str | None]:
    """A detached run's state and error from its job's status and its report: a job
    that failed is ``failed`` whatever its driver's report says; a job whose driver died
    before reporting is what the run's journal says (``journal_report``).

    Example:
        >>> true_state("FAILED", {"status": "completed", "error": None}, "exit 1")
        ('failed', 'exit 1')
        >>> true_state("SUCCEEDED", {"status": "completed", "error": None})
        ('completed', None)
        >>> true_state("FAILED", {"status": "completed", "journal": True}, "exit 137")
        ('completed', None)
    """
    report = report or {}
    if report.get("journal") and job_status in _TERMINAL:
        if report.get("status") == "running":
            return "running", None
        return str(report.get("status")), report.get("error")
    if job_status == "FAILED":
        return "failed", report.get("error") or message or "the run's job failed"
    if job_status == "STOPPED":
        return "cancelled", report.get("error")
    if job_status == "SUCCEEDED":
        if report.get("status") == "failed" or report.get("error"):
            return "failed", report.get("error")
        return "completed", None
    return job_status.lower(), None


def run_report(run_id: str, job_status: str, log: str | None = None
               ) -> dict[str, Any] | None:
    """The report of a run whose job ended: its driver's (``stored_result``), else, when
    the driver died before writing one, its journal's (``journal_report``)."""
    if job_status not in _TERMINAL:
        return None
    report = stored_result(run_id, log)
    if report is None and job_status == "FAILED":
        report = journal_report(run_id)
    return report


def journal_report(run_id: str) -> dict[str, Any] | None:
    """What the runtime's run store journaled of a run, as a report: its status
    (``running`` while its Supervisor goes on) and every completed task's output; None
    when the store has no such run. Its Supervisor writes the journal, so it holds
    whether or not the job's driver lives."""
    import contextlib

    from ray_orch.api.driver_errors import partial_results

    with contextlib.suppress(RayOrchError):
        store = _runtime_store()
        record = store.get_run(run_id) if store is not None else None
        if record is None:
            return None
        outputs = partial_results(store, run_id)
        error = None if record.status in ("running", "completed") else \
            f"the run {record.status} (its job's driver had ended)"
        return {"run_id": run_id, "status": record.status, "error": error, "journal": True,
                "outputs": {k: v.model_dump(mode="json") for k, v in outputs.items()},
                "runs": [{"name": record.workflow, "tasks": {
                    k: {"status": "completed", "output": v.raw} for k, v in outputs.items()}}]}
    return None


def event_line(event: Any) -> str | None:
    """The line a detached run's job writes into its log for an event (None: not shown).

    Example:
        >>> from ray_orch.core.events import Event
        >>> event_line(Event(kind="task_finished", run_id="r1", task="a",
        ...                  status="completed", duration_s=1.5))
        '[ray-orch] task a completed (1.50 s)'
    """
    kind, task, data = event.kind, event.task, event.data or {}
    if kind == "run_started":
        return f"[ray-orch] run {event.run_id} started ({data.get('tasks', '?')} tasks)"
    if kind == "task_started":
        it = f"[{data['iteration']}]" if data.get("iteration") is not None else ""
        return f"[ray-orch] task {task}{it} started" + (
            f" ({event.agent_role})" if event.agent_role else "")
    if kind == "task_finished":
        took = f" ({event.duration_s:.2f} s)" if event.duration_s is not None else ""
        return f"[ray-orch] task {task} {event.status or 'completed'}{took}"
    if kind == "decision":
        return f"[ray-orch] task {task} routed to {data.get('route')}"
    if kind == "approval_requested":
        return f"[ray-orch] task {task} waits for approval"
    if kind == "run_finished":
        return f"[ray-orch] run {event.run_id} {event.status}"
    return None


def _status(client: Any, run_id: str) -> str:
    try:
        return str(client.get_job_status(run_id))
    except RuntimeError as exc:
        raise StandingRuntimeError(f"no run '{run_id}' on this runtime ({exc})",
                                   run_id=run_id) from None


def run_logs(run_id: str, *, address: str | None = None, follow: bool = False
             ) -> Iterator[str]:
    """A detached run's log (its events and output lines): all of it, or (``follow``)
    streamed until the run ends; an ended run's log ends with its true state (``run ID:
    failed: error``). A run whose job's driver died while its Supervisor goes on is
    followed in its journal: each task it completes, then its end."""
    client = _client(address)
    status = _status(client, run_id)
    if not follow:
        text = client.get_job_logs(run_id)
        yield _shown(text)
        if status in _TERMINAL:
            yield from _follow_journal(run_id, status, text, wait=False)
            yield _state_line(client, run_id, status, text)
        return
    seen = 0
    while True:
        status = _status(client, run_id)
        done = status in _TERMINAL
        text = client.get_job_logs(run_id)
        if len(text) > seen:
            yield _shown(text[seen:])
            seen = len(text)
        if done:
            yield from _follow_journal(run_id, status, text)
            yield _state_line(client, run_id, status, text)
            return
        time.sleep(0.5)


def _shown(text: str) -> str:
    """Log text as shown: the report line is read back (``stored_result``), not shown."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(RESULT_MARKER))


def _follow_journal(run_id: str, status: str, log: str, *, wait: bool = True
                    ) -> Iterator[str]:
    """For a run whose job ended without its driver's report (the driver died, its
    Supervisor did not), a line for each task its journal has completed that the log
    does not show, and (``wait``) for each it completes, until it ends."""
    report = run_report(run_id, status, log)
    if not (report and report.get("journal")):
        return
    yield (f"[ray-orch] run {run_id}: its job's driver ended; following the run in its "
           "journal (its Supervisor goes on)\n")
    known = {line.split()[2] for line in log.splitlines()
             if line.startswith("[ray-orch] task ") and " completed" in line}
    while True:
        for name in report.get("outputs", {}):
            if name not in known:
                known.add(name)
                yield f"[ray-orch] task {name} completed (journal)\n"
        if report.get("status") != "running" or not wait:
            return
        time.sleep(1.0)
        report = journal_report(run_id) or {}


def _state_line(client: Any, run_id: str, status: str, log: str) -> str:
    report = run_report(run_id, status, log)
    message = (client.get_job_info(run_id).message or "").split(", last available logs")[0]
    state, error = true_state(status, report, message)
    note = (f" (its job's driver ended first: {message})"
            if report and report.get("journal") and message else "")
    return f"run {run_id}: {state}" + (f": {error}" if error else "") + note + "\n"


def cancel_run(run_id: str, *, address: str | None = None) -> bool:
    """Stop a detached run; False when it had already ended."""
    client = _client(address)
    if _status(client, run_id) in _TERMINAL:
        return False
    return bool(client.stop_job(run_id))


def cancel_on_sigterm() -> None:
    """In a detached run's driver: Ray stops a job with SIGTERM (then SIGKILL); turn it
    into Ctrl-C, on which ``Process`` cancels its run on the Supervisor (which outlives
    this driver on a standing runtime) before the driver exits."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _runtime_store() -> Any:
    """The standing runtime's run store (results of detached runs), or None."""
    from ray_orch.api.standing import read_runtime
    from ray_orch.api.stores import opened

    info = read_runtime()
    if info is None or not (info.store or info.state_dir):
        return None
    return opened(info.run_store())


def stored_result(run_id: str, log: str | None = None) -> dict[str, Any] | None:
    """The report a detached run stored (None while it runs, or if it stored none)."""
    import contextlib

    with contextlib.suppress(RayOrchError):  # a store that is gone: the log still has it
        store = _runtime_store()
        found = store.load_result(run_id) if store is not None else None
        if found is not None:
            return found  # type: ignore[no-any-return]
    for line in reversed((log or "").splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])  # type: ignore[no-any-return]
    return None


def store_result(run_id: str, report: dict[str, Any]) -> None:
    """Store a detached run's report by run id: in the runtime's run store, and as the
    last line of its log (printed here)."""
    line = json.dumps(report, default=str)
    store = _runtime_store()
    if store is not None:
        store.save_result(run_id, json.loads(line))
    print(RESULT_MARKER + line, flush=True)


def attach_run(run_id: str, *, address: str | None = None,
               echo: Callable[[str], None] = print) -> int:
    """Stream a detached run's log until it ends, then print its results.

    Returns:
        0 when it succeeded, 1 when it failed, 130 when it was cancelled.
    """
    client = _client(address)
    for chunk in run_logs(run_id, address=address, follow=True):
        echo(chunk)
    status = _status(client, run_id)
    report = run_report(run_id, status, client.get_job_logs(run_id))
    for run in (report or {}).get("runs", []):
        for name, task in run.get("tasks", {}).items():
            echo(f"  {name}: {task.get('status')}  {(task.get('output') or '')[:200]}\n")
    state, _ = true_state(status, report)
    return {"completed": 0, "cancelled": 130}.get(state, 1)


@dataclass
class DetachedRun:
    """A run submitted with ``Process.workflow(detach=True)``; it continues after the
    submitting driver exits.

    Example:
        >>> run = DetachedRun("20260101-000000-abcdef", address="http://127.0.0.1:8265")
        >>> run.run_id
        '20260101-000000-abcdef'
    """

    run_id: str
    address: str | None = None

    def status(self) -> str:
        """``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED`` or ``STOPPED``."""
        return _status(_client(self.address), self.run_id)

    def cancel(self) -> bool:
        """Stop the run; False when it had already ended."""
        return cancel_run(self.run_id, address=self.address)

    def logs(self) -> str:
        """The run's log so far."""
        return "".join(run_logs(self.run_id, address=self.address))

    def result(self, timeout: float | None = None) -> dict[str, TaskOutput]:
        """Wait for the run to end and return every completed task's output by name.

        Raises:
            TimeoutError: the run did not end within ``timeout`` seconds.
            RunCancelledError: the run was cancelled.
            RunError: the run failed; ``.results`` holds what completed.
        """
        client = _client(self.address)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = _status(client, self.run_id)
            report = run_report(self.run_id, status, client.get_job_logs(self.run_id)
                                if status in _TERMINAL else None) or {}
            state, error = true_state(status, report)
            if status in _TERMINAL and state != "running":
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.run_id} still {state} after {timeout} s")
            time.sleep(0.2)
        outputs = {name: TaskOutput(**output)
                   for name, output in (report.get("outputs") or {}).items()}
        if state == "cancelled":
            raise RunCancelledError(f"run {self.run_id} was cancelled", results=outputs)
        if state != "completed":
            message = error or client.get_job_info(self.run_id).message
            raise RunError(f"run {self.run_id} failed: {message}", results=outputs)
        return outputs


def detach(process: Any, mode: str, **kwargs: Any) -> DetachedRun:
    """Submit ``process``'s run (``mode``) as a detached run on the standing runtime.

    The workflow is validated here, and the process pickled (so what cannot be sent to
    the cluster fails here, typed); the job loads it from Ray's internal KV store.
    """
    import ray.cloudpickle as pickle

    process.validate(mode)
    url = _dashboard(None)
    from ray_orch.api.runtime import ensure_ray

    ensure_ray(runtime_env=process.runtime_env, **process.ray_init)
    from ray.experimental.internal_kv import _internal_kv_put

    run_id = kwargs.pop("run_id", None) or new_run_id()
    clean = _portable(process)
    blob = pickle.dumps((clean, mode, kwargs))
    _internal_kv_put(f"rayorch:detached:{run_id}", blob, namespace=_KV_NAMESPACE)
    command = f"{shlex.quote(sys.executable)} -m ray_orch.api.jobs {run_id}"
    _client(url).submit_job(
        entrypoint=command, submission_id=run_id, runtime_env={"env_vars": _job_env(run_id)},
        metadata={"ray-orch": "1", "workflow": str(process.name)})
    return DetachedRun(run_id, address=url)


def _portable(process: Any) -> Any:
    """A copy of ``process`` without what belongs to this driver (its Supervisor, the
    events of earlier runs), checked to pickle."""
    import copy

    from ray_orch.core.errors import SerializationError

    clean = copy.copy(process)  # a new object: its last run (kept beside it) is not sent
    detach_schemas(clean.task_list)  # as a run's spec is packed
    import ray.cloudpickle as pickle

    try:
        pickle.dumps(clean)
    except Exception as exc:
        raise SerializationError(
            f"Process '{process.name}' cannot be sent to the cluster for a detached run "
            f"({type(exc).__name__}: {exc}); keep tasks and agents free of open files, "
            "locks, sockets and Mock objects", field="tasks") from None
    return clean


def _main(run_id: str) -> int:
    """The job's driver for ``detach=True``: run the pickled process, store the result."""
    import ray.cloudpickle as pickle

    from ray_orch.api.runtime import ensure_ray

    cancel_on_sigterm()
    ensure_ray()
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get

    blob = _internal_kv_get(f"rayorch:detached:{run_id}", namespace=_KV_NAMESPACE)
    if blob is None:
        print(f"run {run_id}: its workflow is not in the cluster's store", file=sys.stderr)
        return 1
    process, mode, kwargs = pickle.loads(blob)
    error: BaseException | None = None
    try:
        getattr(process, mode)(run_id=run_id, **kwargs)
    except Exception as exc:  # any failure is the run's: stored as failed, with its error
        error = exc
    result = process.last_result
    outputs = dict(result.outputs) if result is not None else dict(getattr(error, "results", {})
                                                                   or {})
    store_result(run_id, {"run_id": run_id, "status": "failed" if error else "completed",
                          "error": (str(error) or type(error).__name__) if error else None,
                          "outputs": {k: v.model_dump(mode="json") for k, v in outputs.items()},
                          "runs": [{"name": process.name, "tasks": {
                              k: {"status": "completed", "output": v.raw}
                              for k, v in outputs.items()}}]})
    _internal_kv_del(f"rayorch:detached:{run_id}", namespace=_KV_NAMESPACE)
    return 1 if error else 0


def format_status(report: dict[str, Any]) -> str:
    """``ray-orch status`` as text."""
    lines = [f"ray-orch runtime at {report['address']} (auth: {report['auth_mode']})"]
    if report.get("dashboard_url"):
        lines.append(f"  dashboard: {report['dashboard_url']}")
    if report.get("extra", {}).get("metrics_url"):
        lines.append(f"  metrics:   {report['extra']['metrics_url']}")
    if report.get("extra", {}).get("viewer_url"):
        lines.append(f"  runs:      {report['extra']['viewer_url']}")
    if report.get("memory"):
        memory = report["memory"]
        lines.append(f"  memory:    {memory['rss_mb']:.0f} MB in {memory['processes']} processes")
    auto = report.get("extra", {}).get("auto")
    if auto:
        lines.append(f"  started by a script; stops after {auto['idle_shutdown_s']:g} s "
                     "without a driver")
    registry = report.get("registry")
    if registry:
        lines.append(f"  idle TTL {registry['idle_ttl']} s, at most {registry['idle_limit']} "
                     "idle members and 4 idle Supervisors kept")
        lines.append(f"  pools (idle members by placement): {registry['pools'] or 'none'}")
        for row in registry["actors"]:
            run = f" run {row['run_id']}" if row.get("run_id") else ""
            memory = f" {row['rss_mb']:.0f} MB" if row.get("rss_mb") else ""
            lines.append(f"  {row['kind']:<10} pid {row.get('pid', '?'):<8} "
                         f"{row['state']:<7}{memory}{run}")
    for node in report.get("mcp_sessions", []):
        for row in node.get("sessions", []):
            state = "alive" if row["alive"] else "down"
            pid = f" server pid {row['server_pid']}" if row.get("server_pid") else ""
            error = f"; last error: {row['last_error']}" if row.get("last_error") else ""
            lines.append(f"  mcp {row['name']} ({row['transport']}) {state}{pid}, "
                         f"{row['tools']} tools, {row['restarts']} restarts, session actor "
                         f"pid {node['pid']}{error}")
    for run in report.get("runs", []):
        lines.append(f"  run {run['run_id']}  {run['status']}  {run['entrypoint']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - the detached run's job driver
    sys.exit(_main(sys.argv[1]))
