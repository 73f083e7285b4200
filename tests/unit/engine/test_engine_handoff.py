"""Hand-offs (``engine/handoff.py`` and the member's ``run_after`` / ``forward`` /
``deliver``) on the fakes: a chain's next step waits on a member behind the step before
it, in the same pool or another agent's, and runs only if that step succeeded. No Ray."""

from __future__ import annotations

from ray_orch import Agent, Task
from ray_orch.store.factory import open_store
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


def test_a_journaled_run_hands_nothing_off(stub, tmp_path):
    tasks, crew = chain(stub)
    result, _ = run_on_fakes(spec_of(tasks, crew, mode="sequential",
                                     store=open_store(tmp_path)))
    assert result.error is None and handed(result) == []
