"""Members a Supervisor keeps between its runs (``KeptMembers`` in ``Services.kept``), on
the fakes: a second run of the same agents leases nothing, a changed agent reuses a
member of the same placement, and the limit gives the rest back to the registry."""

from __future__ import annotations

from ray_orch import Agent, Task
from ray_orch.engine.ports import KeptMembers
from ray_orch.testing.fakes import FakeRegistry, fake_services, run_on_fakes, spec_of


def one_task(agent: Agent) -> list[Task]:
    return [Task(name="a", description="Step", agent=agent)]


def test_a_second_run_of_the_same_agent_leases_nothing(stub):
    a = Agent(role="Writer", goal="Write", llm=stub.llm, pool_size=2)
    registry, kept = FakeRegistry(), KeptMembers()
    for run_id in ("r1", "r2"):
        result, _ = run_on_fakes(spec_of(one_task(a), [a], run_id=run_id),
                                 services=fake_services(registry=registry, kept=kept))
        assert result.error is None
    assert len(registry.created) == 2
    assert sum(len(v) for v in kept.held.values()) == 2 and registry.size() == 0


def test_another_agent_with_the_same_placement_takes_the_kept_member(stub):
    registry, kept = FakeRegistry(), KeptMembers()
    first = Agent(role="Writer", goal="Write", llm=stub.llm)
    second = Agent(role="Editor", goal="Edit", llm=stub.llm)
    for agent, run_id in ((first, "r1"), (second, "r2")):
        result, _ = run_on_fakes(spec_of(one_task(agent), [agent], run_id=run_id),
                                 services=fake_services(registry=registry, kept=kept))
        assert result.error is None
    assert len(registry.created) == 1
    [member] = registry.created
    assert member.target.completed == 2
    assert member.target.agents == {}  # each run's agents dropped when it ended


def test_beyond_the_limit_members_go_back_to_the_registry(stub):
    a = Agent(role="Writer", goal="Write", llm=stub.llm, pool_size=3)
    registry, kept = FakeRegistry(), KeptMembers(limit=1)
    result, _ = run_on_fakes(spec_of(one_task(a), [a]),
                             services=fake_services(registry=registry, kept=kept))
    assert result.error is None
    assert sum(len(v) for v in kept.held.values()) == 1
    assert registry.size() == 2
    # What is released goes back too (a Supervisor about to stop).
    for (placement, key), handles in kept.release().items():
        registry.give_back(placement, handles, agent_key=key)
    assert registry.size() == 3 and kept.held == {}
