"""One event schema: every event kind listed once in ``core/events.py``, and the public
stream derived from it (``StreamEvent`` shares ``RunEvent``'s fields; ``to_stream``
yields only the stream kinds ``STREAMED_AS`` names; every stream kind has a source)."""

from __future__ import annotations

import ast
import inspect
from typing import get_args

import pytest

from ray_orch.core import events
from ray_orch.core.events import DRIVER_KINDS, STREAMED_AS, Event, EventKind, RunEvent, StreamKind
from ray_orch.core.stream import StreamEvent, to_stream

# One sample per event kind, with the data its stream events read.
SAMPLES = {
    "task_finished": [{"status": "completed", "data": {"iteration": 2, "output": {"raw": "x"}}},
                      {"status": "completed"},
                      {"status": "failed", "outcome": "TaskFailedError",
                       "data": {"error": "boom"}}],
    "task_completed": [{"data": {"output": {"raw": "done"}}}],
    "decision": [{"data": {"route": "billing"}}],
    "token": [{"data": {"text": "he", "attempt": 1}}],
    "tool_call": [{"data": {"tool": "lookup", "arguments": {"id": 1}, "ok": True}}],
    "approval_requested": [{"data": {"tool": None, "arguments": None,
                                     "request": {"id": "r1"}}}],
    "retry": [{"data": {"count": 1}}],
}


def _literal_strings(name: str) -> list[str]:
    """The strings of ``name = Literal[...]`` in core/events.py, as written (Python's
    ``Literal`` drops repeats, so the source is read)."""
    tree = ast.parse(inspect.getsource(events))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == name):
            return [elt.value for elt in ast.walk(node.value)
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    raise AssertionError(f"{name} not found")


@pytest.mark.parametrize("name", ["EventKind", "StreamKind"])
def test_every_kind_is_listed_once(name):
    written = _literal_strings(name)
    assert len(written) == len(set(written)), sorted(k for k in written if written.count(k) > 1)
    assert "tool_call" in written


def test_the_stream_is_derived_from_the_events():
    kinds, stream_kinds = set(get_args(EventKind)), set(get_args(StreamKind))
    assert set(STREAMED_AS) <= kinds
    produced = {k for targets in STREAMED_AS.values() for k in targets}
    assert produced <= stream_kinds
    assert produced | set(DRIVER_KINDS) == stream_kinds  # every stream kind has a source
    shared = set(RunEvent.model_fields)
    assert shared <= set(Event.model_fields) and shared <= set(StreamEvent.model_fields)


@pytest.mark.parametrize("kind", sorted(get_args(EventKind)))
def test_to_stream_yields_only_the_kinds_the_schema_names(kind):
    for extra in SAMPLES.get(kind, [{}]):
        event = Event(kind=kind, task="t", run_id="r1", workflow="w", **extra)
        streamed = to_stream(event)
        assert {s.kind for s in streamed} <= set(STREAMED_AS.get(kind, ()))
        for item in streamed:
            assert (item.run_id, item.workflow, item.ts) == ("r1", "w", event.ts)
    if kind in STREAMED_AS and kind != "task_finished":
        assert to_stream(Event(kind=kind, **SAMPLES.get(kind, [{}])[0]))
