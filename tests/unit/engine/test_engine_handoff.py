"""Hand-offs (``engine/handoff.py`` and the member's ``run_after`` / ``forward`` /
``deliver``) on the fakes: a chain's next step waits on a member behind the step before
it, in the same pool or another agent's, and runs only if that step succeeded. No Ray."""

from __future__ import annotations

import threading
import time

import pytest

from ray_orch import Agent, Task, tool
from ray_orch.store.factory import open_store
from ray_orch.testing import StubLLMServer
from ray_orch.testing.fakes import FakeRegistry, fake_services, run_on_fakes, spec_of


def chain(stub, *, agents: int = 1, **options) -> tuple[list[Task], list[Agent]]:
    crew = [Agent(role=f"Agent{i}", goal="Work", llm=stub.llm) for i in range(agents)]
    tasks = [Task(name=f"step{i}", description=f"Step {i}: go on", agent=crew[i % agents],
                  **options) for i in range(4)]
    for i in range(4):
        stub.add_rule(match=f"Step {i}:", reply=f"text v{i}")
    return tasks, crew


def handed(result) -> list[str]:
    return [n for n, o in result.outputs.items() if o.metadata.get("handed_off")]


def test_a_chain_follows_its_predecessor_in_place_with_its_output(stub):
    tasks, crew = chain(stub)
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential"))
    assert result.error is None
    assert handed(result) == ["step1", "step2", "step3"]
    for i in range(1, 4):
        assert f"text v{i - 1}" in stub.requests_matching(f"Step {i}:")[0].prompt
    assert stub.count() == 4  # nothing ran twice


def test_another_agents_step_waits_in_its_own_pool_and_gets_the_output_forwarded(stub):
    tasks, crew = chain(stub, agents=2)
    registry = FakeRegistry()
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential"),
                             services=fake_services(registry=registry))
    assert result.error is None and handed(result) == ["step1", "step2", "step3"]
    assert [result.outputs[f"step{i}"].agent for i in range(4)] == \
        ["Agent0", "Agent1", "Agent0", "Agent1"]
    first, second = registry.created  # one member per agent
    assert first.target.completed == 2 and second.target.completed == 2
    assert "text v1" in stub.requests_matching("Step 2:")[0].prompt


def test_the_follower_of_a_failed_step_never_calls_the_model(stub):
    tasks, crew = chain(stub, agents=2, max_retries=0)
    stub.clear_rules()
    stub.add_rule(match="Step 1:", fault="401")
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential"))
    assert result.statuses["step1"] == "failed"
    assert stub.count("Step 2:") == 0 and stub.count("Step 3:") == 0
    assert result.statuses["step2"] != "completed"


class SlowMemberWrites:
    """A run store whose writes from other threads (a member's ``asyncio.to_thread``)
    take 0.3 s: the follower's model call ends long before its predecessor's record."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def save_task(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)
        return self.store.save_task(*args, **kwargs)


@pytest.mark.parametrize("agents", [1, 2], ids=["same-member", "forwarded"])
def test_a_journaled_run_hands_off_but_acts_only_after_the_step_before_is_recorded(
        stub, tmp_path, agents):
    store = open_store(tmp_path)
    recorded_first: dict[int, bool] = {}

    @tool
    def check(step: int) -> str:
        """Look at the step before."""
        recorded_first[step] = store.load_task("r1", f"step{step - 1}") is not None
        return "looked"

    crew = [Agent(role=f"Agent{i}", goal="Work", llm=stub.llm, tools=[check])
            for i in range(agents)]
    tasks = [Task(name=f"step{i}", description=f"Step {i}: go on", agent=crew[i % agents])
             for i in range(4)]
    for i in range(4):
        stub.add_rule(match=f"Step {i}:", reply=[
            StubLLMServer.tool_calls(("check", {"step": i})), f"text v{i}"])
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential",
                                     store=SlowMemberWrites(store)))

    assert result.error is None and handed(result) == ["step1", "step2", "step3"]
    assert recorded_first == {0: False, 1: True, 2: True, 3: True}
    # The Supervisor's record (with what only it knows) is the one kept, not the member's.
    assert all("queue_s" in store.load_task("r1", f"step{i}")["metadata"] for i in range(4))


def test_with_a_run_store_a_timed_task_neither_follows_nor_leads(stub, tmp_path):
    tasks, crew = chain(stub)
    tasks[1].timeout = 30.0  # the Supervisor may still fail it: no member records it
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential",
                                     store=open_store(tmp_path)))
    assert result.error is None and handed(result) == ["step3"]
    # Without a store it both follows and leads.
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential"))
    assert handed(result) == ["step1", "step2", "step3"]


class CountedWrites:
    """A run store that notes which tasks' records came from another thread (a member's
    own record is written with ``asyncio.to_thread``; the Supervisor's is not)."""

    def __init__(self, store) -> None:
        self.store = store
        self.by_member: list[str] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def save_task(self, run_id, task_id, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            self.by_member.append(task_id.split("#")[0])
        return self.store.save_task(run_id, task_id, *args, **kwargs)


@pytest.mark.parametrize("agents", [1, 2], ids=["same-member", "forwarded"])
def test_a_member_records_only_what_a_hand_off_may_follow(stub, tmp_path, agents):
    # Its record is there for the step after it (whose tools wait for it); the last step
    # has none: the Supervisor's record alone, and the output returns without waiting.
    tasks, crew = chain(stub, agents=agents)
    store = CountedWrites(open_store(tmp_path))
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential", store=store))
    assert result.error is None and handed(result) == ["step1", "step2", "step3"]
    assert sorted(store.by_member) == ["step0", "step1", "step2"]
    assert all(store.load_task("r1", f"step{i}") is not None for i in range(4))
    # Tasks nothing depends on, sent by the Supervisor: no member records either.
    store.by_member.clear()
    alone = [Task(name=f"alone{i}", description=f"Step {i}: alone", agent=crew[0])
             for i in range(2)]
    result, _ = run_on_fakes(spec_of(alone, crew, mode="workflow", store=store, run_id="r2"))
    assert result.error is None and store.by_member == []
    assert all(store.load_task("r2", f"alone{i}") is not None for i in range(2))
