"""Calls across the actor boundary take records (``engine/messages.py``), at most three
positional arguments each: checked on every call a run makes through its fake ports, and
on every ``.remote(...)`` call written in ``ray_orch`` and ``actors``."""

from __future__ import annotations

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest

from ray_orch import Agent, Task
from ray_orch.engine import messages
from ray_orch.engine.listener import RunListener
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, fake_services, run_on_fakes, spec_of

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple[str, tuple, dict]] = []
    real = FakeHandle._call

    def recording(self, name, args, kwargs, streaming):
        seen.append((name, args, kwargs))
        return real(self, name, args, kwargs, streaming)

    monkeypatch.setattr(FakeHandle, "_call", recording)
    return seen


def test_every_call_of_a_run_is_a_record_or_a_few_plain_values(stub, calls):
    stub.reply = "one two"
    lead = Agent(role="Lead", goal="Plan", llm=stub.llm)
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="plan", description="Plan it", agent=lead),
             Task(name="draft", description="Draft it", agent=writer, context=["plan"]),
             Task(name="each", description="Polish {item}", agent=writer, context=["draft"],
                  task_type="loop", loop_data=["a", "b"])]
    listener = RunListener()
    result, _ = run_on_fakes(spec_of(tasks, [lead, writer], tokens=True, stream=True),
                             services=fake_services(registry=FakeRegistry(), listener=listener),
                             listener=listener)
    assert result.error is None
    names = {name for name, _, _ in calls}
    # Leases, attempts, a hand-off to another agent's member, a batch, tokens, the end.
    assert {"lease", "run", "run_after", "forward", "deliver", "run_many", "push",
            "unbind"} <= names
    for name, args, _ in calls:
        assert len(args) <= 3, (name, args)
    records = {name: args[0] for name, args, _ in calls
               if name in ("lease", "run", "run_after", "run_many", "push", "bind")}
    assert isinstance(records["lease"], messages.LeaseRequest)
    assert isinstance(records["run"], messages.AttemptRequest)
    assert isinstance(records["run_many"], messages.BatchRequest)
    assert isinstance(records["run_after"], messages.HandOffRequest)
    assert isinstance(records["push"], messages.TokenBatch)


def test_records_are_kw_only_documented_and_pickle():
    for name in messages.__all__:
        record = getattr(messages, name)
        assert dataclasses.is_dataclass(record)
        with pytest.raises(TypeError):
            record("positional")
        source = Path(messages.__file__).read_text()
        for field in dataclasses.fields(record):
            assert f'    {field.name}: ' in source
    request = messages.AttemptRequest(run_id="r", agent_key="a", task_name="t",
                                      bind=messages.Binding(run_id="r", agents={}, tasks={}))
    assert pickle.loads(pickle.dumps(request)) == request


def test_no_remote_call_in_the_code_takes_more_than_three_positional_arguments():
    found = []
    for folder in ("ray_orch", "actors"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "remote" and len(node.args) > 3):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
