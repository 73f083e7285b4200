"""A run this process drives for the viewer (a paused run answered, a failed one resumed):
it runs in a thread through ``Process.stream()``, and its events update a small state
(each task's status, iterations, token text, errors) that the server reads."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, wait
from typing import Any

from ray_orch.core.stream import StreamEvent

__all__ = ["LiveRun"]

_TOKEN_TEXT_LIMIT = 20_000  # characters of live token text kept per task
_EVENTS_KEPT = 500
_FINAL = {"run_failed": "failed", "run_completed": "completed"}
_BY_ERROR = {"RunPaused": "paused", "RunCancelledError": "cancelled"}


class LiveRun:
    """One driven run.

    Args:
        process: the ``Process`` to run (rebuilt from the stored definition).
        mode: ``"workflow"``, ``"sequential"`` or ``"hierarchical"``.
        run_id: the stored run it continues.
        run_kwargs: what ``stream()`` gets besides the mode (``resume=``, ``answers=``).
        after: what to wait for first (Ray being started in the background).
    """

    def __init__(self, process: Any, mode: str, *, run_id: str,
                 run_kwargs: dict[str, Any], after: Future[Any] | None = None) -> None:
        self.process = process
        self.after = after
        self.mode = mode
        self.run_id = run_id
        self.run_kwargs = run_kwargs
        self.lock = threading.Lock()
        self.state = "running"
        self.error: str | None = None
        self.started = time.time()
        self.ended: float | None = None
        self.statuses: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.iterations: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.routes: list[list[str]] = []
        self.events: deque[dict[str, Any]] = deque(maxlen=_EVENTS_KEPT)
        self.task_versions: dict[str, int] = {}
        self.version = 0
        self.cancel_asked = False
        self.thread = threading.Thread(target=self._drive, name=f"ui-run-{run_id}",
                                       daemon=True)

    def start(self) -> None:
        """Start the run in its thread."""
        self.thread.start()

    @property
    def active(self) -> bool:
        """Whether the run is still going."""
        return self.ended is None

    def _drive(self) -> None:
        if self.after is not None:
            wait([self.after])
        try:
            for event in self.process.stream(self.mode, tokens=True, **self.run_kwargs):
                self.apply(event)
        except BaseException as exc:  # a definition or start error: the run did not go
            with self.lock:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                self.ended = time.time()
                self.version += 1
        else:
            with self.lock:
                if self.ended is None:  # the stream ended without its last event
                    self.ended = time.time()
                    self.version += 1

    def apply(self, event: StreamEvent) -> None:
        """Fold one event into the state (called from the run's thread)."""
        with self.lock:
            self._apply(event)
            self.version += 1
            if event.task:
                self.task_versions[event.task] = self.task_versions.get(event.task, 0) + 1

    def _apply(self, event: StreamEvent) -> None:
        kind, task = event.kind, event.task
        if kind == "token" and task:
            text = self.tokens.get(task, "") + (event.text or "")
            self.tokens[task] = text[-_TOKEN_TEXT_LIMIT:]
            return  # tokens are not kept as events
        self.events.append(_brief(event))
        if kind in _FINAL:
            self.state = _BY_ERROR.get(event.error_type or "", _FINAL[kind])
            self.error = event.error
            self.ended = event.ts
            return
        if task is None:
            return
        if kind == "task_started" and event.iteration is None:
            self.statuses[task] = "running"
        elif kind == "task_started":
            self.statuses.setdefault(task, "running")
        elif kind == "loop_iteration":
            self.iterations[task] = self.iterations.get(task, 0) + 1
        elif kind in ("task_completed", "task_skipped"):
            self.statuses[task] = kind.removeprefix("task_")
        elif kind == "task_failed":
            self.statuses[task] = "failed"
            self.errors[task] = event.error or event.error_type or "failed"
        elif kind == "approval_requested":
            self.statuses[task] = "paused"
        elif kind == "task_retried":
            self.retries[task] = int(event.data.get("count", 0))
        elif kind == "decision" and event.route is not None:
            self.routes.append([task, event.route])

    def iterations_done(self) -> int:
        """Loop iterations finished so far, over every loop task."""
        with self.lock:
            return sum(self.iterations.values())

    def cancel(self) -> None:
        """Ask the run to stop: in-flight work is cancelled, completed results kept. The
        Supervisor is told as soon as the run has one."""
        with self.lock:
            self.cancel_asked = True
        deadline = time.monotonic() + 120  # Ray may still be starting
        while self.active and getattr(self.process, "_supervisor", None) is None:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        if self.active:
            self.process.cancel()

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, for the server."""
        with self.lock:
            return {"state": self.state, "error": self.error, "started": self.started,
                    "ended": self.ended, "statuses": dict(self.statuses),
                    "errors": dict(self.errors), "iterations": dict(self.iterations),
                    "retries": dict(self.retries), "routes": list(self.routes),
                    "versions": dict(self.task_versions), "version": self.version,
                    "events": list(self.events)[-50:]}

    def task_view(self, task: str) -> dict[str, Any]:
        """What the run knows live of one task: token text and its events."""
        with self.lock:
            return {"tokens": self.tokens.get(task, ""),
                    "events": [e for e in self.events if e.get("task") == task][-100:]}


def _brief(event: StreamEvent) -> dict[str, Any]:
    """An event as a short record (no outputs: those are read from the store)."""
    brief: dict[str, Any] = {"kind": event.kind, "ts": event.ts, "task": event.task}
    for name in ("iteration", "route", "error", "error_type", "tool", "arguments", "agent"):
        value = getattr(event, name)
        if value is not None:
            brief[name] = value
    if event.kind == "tool_call":
        brief["data"] = {k: v for k, v in event.data.items() if k != "result"} | {
            "result": str(event.data.get("result", ""))[:2000]}
    return brief
