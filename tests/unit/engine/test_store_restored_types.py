"""Outputs restored from the run store are the types fresh ones are: ``.pydantic`` the
task's model, ``.json_dict`` a dict, for tasks and loop iterations (the run loop on the
in-process fakes, a real SQLite store, the stub model over HTTP)."""

from __future__ import annotations

import asyncio
import json

from pydantic import BaseModel

from ray_orch import Agent, Task
from ray_orch.engine.run import Run, RunSpec
from ray_orch.store.factory import open_store
from ray_orch.testing import StubLLMServer
from ray_orch.testing.fakes import fake_services


class Ticket(BaseModel):
    category: str


def _run(tasks, agent, store, **options):
    spec = RunSpec(run_id="r1", workflow="w", mode="workflow", tasks=tasks, agents=[agent],
                   metrics=False, **options)
    return asyncio.run(Run(spec, emit=lambda e: None,
                           services=fake_services(store=store)).execute())


def test_restored_tasks_and_iterations_have_their_models(tmp_path):
    with StubLLMServer(reply=json.dumps({"category": "billing"})) as stub:
        stub.add_rule(match="Escalate", fault="401")  # the first run stops here
        agent = Agent(role="Triage", goal="Sort tickets", llm=stub.llm)

        def tasks():
            return [Task(name="classify", description="Classify the ticket", agent=agent,
                         output_pydantic=Ticket),
                    Task(name="each", description="Classify item {item}", agent=agent,
                         task_type="loop", loop_data=["a", "b"], output_pydantic=Ticket,
                         context=["classify"]),
                    Task(name="escalate", description="Escalate it", agent=agent,
                         context=["each"], max_retries=0)]

        store = open_store(tmp_path / "store")
        first = _run(tasks(), agent, store)
        assert first.statuses["escalate"] == "failed"
        asked = stub.count()
        stub.clear_rules()
        again = _run(tasks(), agent, store, resume=True)
    assert again.error is None and sorted(again.resumed) == ["classify", "each"]
    assert stub.count() == asked + 1  # only the escalation ran again
    restored = again.outputs["classify"]
    assert isinstance(restored.pydantic, Ticket) and restored.pydantic.category == "billing"
    assert restored.json_dict == {"category": "billing"}
    iterations = again.outputs["each"].iterations
    assert [type(i.pydantic) for i in iterations] == [Ticket, Ticket]
    assert all(i.json_dict == {"category": "billing"} for i in iterations)


def test_iterations_restored_mid_loop_have_their_models(tmp_path):
    with StubLLMServer(reply=json.dumps({"category": "refund"})) as stub:
        stub.add_rule(match="item b", fault="401")  # the loop stops at its second item
        agent = Agent(role="Triage", goal="Sort tickets", llm=stub.llm)

        def tasks():
            return [Task(name="each", description="Classify item {item}", agent=agent,
                         task_type="loop", loop_data=["a", "b"], output_pydantic=Ticket,
                         max_retries=0)]

        store = open_store(tmp_path / "store")
        first = _run(tasks(), agent, store)
        assert first.statuses["each"] == "failed"
        stub.clear_rules()
        again = _run(tasks(), agent, store, resume=True)
        assert stub.count("item a") == 1  # restored, not asked again
    assert again.error is None
    assert [type(i.pydantic) for i in again.outputs["each"].iterations] == [Ticket, Ticket]
    assert again.outputs["each"].iterations[0].pydantic.category == "refund"
