"""How a run reports: events to the driver and (batched) to the metrics sink, with
gauges thinned to their latest value."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray_orch.core.events import Event
from ray_orch.engine.ports import MetricsSink

__all__ = ["Reporter"]

_GAUGES = ("pool", "scheduler")
# For the driver's live stream only: the metrics hub has no use for outputs or tokens.
_DRIVER_ONLY = ("task_completed", "token", "tool_progress", "approval_requested")
_GAUGE_INTERVAL = 0.1


class Reporter:
    """Sends a run's events to ``deliver`` (the driver's stream) and to ``sink``.

    Gauges (``pool``, ``scheduler``) only need their latest value: at most one per key
    goes out every 0.1 s, so a 10,000-task fan-out does not ship 20,000 pool snapshots.

    Example:
        >>> seen = []
        >>> reporter = Reporter(workflow="w", run_id="r", deliver=seen.append)
        >>> reporter.emit("task_ready", task="a")
        >>> [(e.kind, e.task, e.run_id) for e in seen]
        [('task_ready', 'a', 'r')]
    """

    def __init__(self, *, workflow: str, run_id: str, deliver: Callable[[Event], None],
                 sink: MetricsSink | None = None, streaming: bool = False) -> None:
        self.workflow = workflow
        self.streaming = streaming  # the driver streams the run: send what it shows
        self.run_id = run_id
        self.deliver = deliver
        self.sink = sink
        self.gauges: dict[tuple[str, Any], Event] = {}
        self.gauges_sent = 0.0
        self.gauges_counted = 0.0

    def emit(self, kind: str, **fields: Any) -> None:
        """Build and send one event of this run."""
        self.send(Event(kind=kind, workflow=self.workflow,  # type: ignore[arg-type]
                        run_id=self.run_id, **fields))

    def send(self, event: Event) -> None:
        """To the driver, and (batched) to the metrics sink."""
        if event.kind in _GAUGES:
            self.gauges[(event.kind, event.data.get("pool"))] = event
            if event.ts - self.gauges_sent < _GAUGE_INTERVAL:
                return
            self.flush_gauges()
            return
        self._out(event)

    def flush_gauges(self) -> None:
        """Send the latest value of every gauge now."""
        pending, self.gauges = self.gauges, {}
        self.gauges_sent = time.time()
        for event in pending.values():
            self._out(event)

    def gauge_due(self, force: bool = False) -> bool:
        """Whether gauges are worth counting again (at most every 0.1 s)."""
        now = time.time()
        if not force and now - self.gauges_counted < _GAUGE_INTERVAL:
            return False
        self.gauges_counted = now
        return True

    def close(self) -> None:
        """The run is over: gauges flushed, the sink closed."""
        self.flush_gauges()
        if self.sink is not None:
            self.sink.close()

    def _out(self, event: Event) -> None:
        self.deliver(event)
        if self.sink is not None and event.kind not in _DRIVER_ONLY:
            self.sink.add(event)
