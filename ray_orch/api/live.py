"""``ray-orch run FILE --stream``: a run's events printed as they happen.

``streamed_runs()`` makes every ``Process`` run in its block go through
``Process.stream(tokens=True)`` and print each event, one line an event and the model's
answers as they arrive, then return what the run would have returned.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from ray_orch.api.process import Process
from ray_orch.core.errors import RunError
from ray_orch.core.stream import StreamEvent
from ray_orch.engine.graph import Mode

__all__ = ["EventPrinter", "streamed_runs"]

_MODES: dict[str, Mode] = {"sequential": "sequential", "workflow": "workflow",
                           "hierarchical": "hierarchical"}


class EventPrinter:
    """Prints ``StreamEvent``s as lines; token pieces run on, under their task.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> show = EventPrinter(out)
        >>> show(StreamEvent(kind="decision", task="route", route="billing"))
        >>> out.getvalue()
        '  ◆ route → billing\\n'
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.speaking: tuple[str | None, int | None] | None = None

    def __call__(self, ev: StreamEvent) -> None:
        if ev.kind == "token":
            if self.speaking != (ev.task, ev.iteration):
                self._end_line()
                label = ev.task if ev.iteration is None else f"{ev.task}[{ev.iteration}]"
                self.out.write(f"  ✎ {label}: ")
                self.speaking = (ev.task, ev.iteration)
            self.out.write((ev.text or "").replace("\n", " "))
            self.out.flush()
            return
        self._end_line()
        line = self._line(ev)
        if line:
            self.out.write(line + "\n")
            self.out.flush()

    def _end_line(self) -> None:
        if self.speaking is not None:
            self.out.write("\n")
            self.speaking = None

    @staticmethod
    def _line(ev: StreamEvent) -> str | None:
        where = f" [{ev.agent}]" if ev.agent else ""
        it = f"[{ev.iteration}]" if ev.iteration is not None else ""
        if ev.kind == "run_started":
            return f"▶ run {ev.run_id} started ({ev.data.get('tasks', '?')} tasks)"
        if ev.kind == "task_started":
            return f"  → {ev.task}{it} started{where}"
        if ev.kind == "decision":
            return f"  ◆ {ev.task} → {ev.route}"
        if ev.kind == "task_completed":
            seconds = (ev.output.metadata.get("execution_time") if ev.output else None)
            took = f" ({seconds:.2f} s)" if isinstance(seconds, (int, float)) else ""
            return f"  ✓ {ev.task} completed{took}"
        if ev.kind == "loop_iteration":
            return f"  ✓ {ev.task}{it} done"
        if ev.kind == "task_retried":
            return f"  ↻ {ev.task} retried ({ev.data.get('count')} more attempts)"
        if ev.kind == "task_failed":
            return f"  ✗ {ev.task} failed: {ev.error}"
        if ev.kind == "task_skipped":
            return f"  · {ev.task} skipped ({ev.error})"
        if ev.kind == "tool_call":
            return f"  ⚙ {ev.task} called {ev.tool}({ev.arguments})"
        if ev.kind == "tool_progress":
            total = ev.data.get("total")
            done = f"{ev.data.get('progress'):g}" + (f"/{total:g}" if total else "")
            note = f": {ev.data['message']}" if ev.data.get("message") else ""
            return f"  … {ev.task} {ev.tool} {done}{note}"
        if ev.kind == "approval_requested":
            return f"  ? {ev.task} waits for approval ({ev.tool or 'output'})"
        if ev.kind == "run_completed":
            return f"■ run {ev.run_id} completed"
        if ev.kind == "run_failed":
            return f"■ run {ev.run_id} failed: {ev.error}"
        return None


@contextlib.contextmanager
def streamed_runs(out: TextIO | None = None) -> Iterator[None]:
    """Within the block, ``Process`` runs stream their events to ``out`` as they run."""
    show = EventPrinter(out)
    saved = {name: Process.__dict__[name] for name in _MODES}

    def runner(mode: Mode) -> Any:
        def run(self: Process, **kwargs: Any) -> dict[str, Any]:
            last: StreamEvent | None = None
            for ev in self.stream(mode, tokens=True, **kwargs):
                show(ev)
                last = ev
            if last is not None and last.kind == "run_failed":
                raise RunError(last.error or "the run failed", results=last.results or {})
            return dict(last.results or {}) if last is not None else {}
        return run

    for name, mode in _MODES.items():
        setattr(Process, name, runner(mode))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(Process, name, method)
