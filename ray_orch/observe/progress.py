"""A live progress display on the driver, fed with the run's ``Event``s.

On a terminal it shows tasks done/total, running and failed counts and the tasks in
progress (rich). When stdout is not a terminal, or ``RAY_ORCH_PROGRESS=0``, or
``progress=False``, it shows nothing (or, with ``verbose``, one line per finished task).
A display problem never reaches the run: the sink turns itself off instead. While the
console asks a person (an approval), the display steps aside (``held``): a live display
redirects stdout and redraws over a prompt, which then never shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as _RichProgress
from rich.text import Text

from ray_orch.core.events import Event

__all__ = ["Progress", "progress_enabled"]

ENV = "RAY_ORCH_PROGRESS"
_OFF = {"0", "false", "no", "off"}
_log = logging.getLogger(__name__)


def progress_enabled(progress: bool | None = None, console: Console | None = None) -> bool:
    """Whether a live display should run.

    Args:
        progress: the caller's choice; None defers to ``RAY_ORCH_PROGRESS`` (default on).
        console: where it would draw (default: stdout).

    Returns:
        True only when asked for (or not refused) and the console is a terminal.
    """
    if progress is False:
        return False
    if progress is None and os.environ.get(ENV, "").strip().lower() in _OFF:
        return False
    return (console or Console()).is_terminal


class _Display(_RichProgress):
    """rich's Progress with a line naming the tasks in progress under the bar."""

    current: str = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.current:
            yield Text(self.current, style="dim", overflow="ellipsis", no_wrap=True)


class Progress:
    """Event sink that draws the run's progress.

    Args:
        total: units of work, if known: a task, or one item of a loop. A ``run_started``
            event's ``data["units"]`` sets it (each loop over static data counts its
            items; a loop over an upstream output counts 1 until its first iteration
            says how many items it has, and the line under the bar says so), so the
            total is known before the bar fills.
        enabled: True/False, or None to follow ``RAY_ORCH_PROGRESS`` (default on);
            either way the live display only runs on a terminal.
        verbose: print one line per finished task (on a terminal: above the bar).
        console: a rich Console (default: stdout).
        description: the label in front of the bar (default: the workflow name).

    Example:
        >>> with Progress(total=2, enabled=False) as progress:
        ...     progress(Event(kind="task_finished", task="a", status="completed"))
        >>> progress.done
        1
    """

    def __init__(self, total: int | None = None, *, pending: list[str] | None = None,
                 enabled: bool | None = None,
                 verbose: bool = False, console: Console | None = None,
                 description: str | None = None) -> None:
        self.console = console or Console()
        self.total = total
        self.verbose = verbose
        self.description = description
        self.done = 0
        self.failed = 0
        self.running: dict[str, None] = {}  # ordered set: oldest first
        # Loops whose items come from an upstream output (each counted 1 in ``total``).
        self.pending: dict[str, None] = dict.fromkeys(pending or [])
        self.live = progress_enabled(enabled, self.console)
        self._display: _Display | None = None
        self._bar: Any = None
        self._lock = threading.Lock()
        self._held = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the live display (no-op when disabled or started)."""
        with self._lock:
            if not self.live or self._display is not None:
                return
            try:
                display = _Display(
                    TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
                    TimeElapsedColumn(),
                    console=self.console, transient=False, refresh_per_second=8)
                self._bar = display.add_task(self.description or "tasks", total=self.total,
                                             running=0, failed=0)
                display.start()
                self._display = display
            except Exception as exc:  # the display must never break a run
                _log.debug("progress display off: %s", exc)
                self.live = False

    def stop(self) -> None:
        """Stop the live display, leaving its last state on screen."""
        with self._lock:
            display, self._display = self._display, None
        if display is not None:
            try:
                display.stop()
            except Exception as exc:
                _log.debug("progress display stop failed: %s", exc)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Within the block the display is stopped (its last state left on screen) and
        events do not start it again: the terminal is the console prompt's.

        Example:
            >>> progress = Progress(total=1, enabled=False)
            >>> with progress.held():
            ...     progress.update({"kind": "task_started", "task": "a"})
            >>> list(progress.running)
            ['a']
        """
        with self._lock:
            self._held += 1
        self.stop()
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events --------------------------------------------------------------------------

    def __call__(self, event: Event | Mapping[str, Any]) -> None:
        """Feed one event (same as ``update``)."""
        self.update(event)

    def update(self, event: Event | Mapping[str, Any]) -> None:
        """Take one event into account and redraw.

        Args:
            event: an ``Event`` or its dict form; kinds other than run/task ones are
                ignored.
        """
        try:
            self._update(event if isinstance(event, Event) else Event.model_validate(event))
        except Exception as exc:  # never let the display fail the run
            _log.debug("progress: event ignored: %s", exc)
            self.live = False
            self.stop()

    def _update(self, ev: Event) -> None:
        line: str | None = None
        with self._lock:
            if ev.kind == "run_started":
                units = ev.data.get("units", ev.data.get("tasks", self.total or 0))
                self.total = int(units or 0) or self.total
                self.pending = dict.fromkeys(ev.data.get("loops_pending") or [])
                self.description = self.description or ev.workflow
            elif ev.kind in ("task_started", "task_finished") and ev.task in self.pending \
                    and isinstance(ev.data.get("of"), int) and self.total is not None:
                # A loop over an upstream output: its items are known now (it counted 1).
                self.total += ev.data["of"] - 1
                del self.pending[ev.task]
            if ev.kind == "task_started" and ev.task:
                self.running[ev.task] = None
            elif ev.kind == "task_finished" and ev.task:
                self.running.pop(ev.task, None)
                self.done += 1
                status = ev.status or "completed"
                if status == "failed":
                    self.failed += 1
                if self.total is not None and self.done > self.total:
                    self.total = self.done
                if self.verbose:
                    took = f" in {ev.duration_s:.2f} s" if ev.duration_s is not None else ""
                    of = f"/{self.total}" if self.total else ""
                    line = f"[{self.done}{of}] {ev.task} {status}{took}"
            elif ev.kind not in ("run_finished", "run_started", "task_started"):
                return
        if line is not None:
            self.console.print(line, markup=False, highlight=False)
        if ev.kind == "run_finished":
            self._redraw()
            self.stop()
            return
        if self.live and not self._held:
            self.start()
            self._redraw()

    def _redraw(self) -> None:
        display = self._display
        if display is None:
            return
        names = list(self.running)
        shown = ", ".join(names[:4]) + (f" +{len(names) - 4}" if len(names) > 4 else "")
        waiting = ", ".join(self.pending)
        notes = [f"now: {shown}" if shown else "",
                 f"items of loop {waiting}: counted once their input arrives" if waiting else ""]
        display.current = "  ".join(n for n in notes if n)
        display.update(self._bar, completed=self.done, total=self.total,
                       description=self.description or "tasks",
                       running=len(names), failed=self.failed)
