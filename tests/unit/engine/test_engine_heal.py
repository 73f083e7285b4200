"""Healing a run whose Supervisor was lost, on the fakes: what the journal holds is not
asked again when a new Supervisor resumes the run, and the registry reclaims the members
the lost one held (``MemberPool.reclaim``, by lessee). No Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.engine.run import Run
from ray_orch.store.factory import open_store
from ray_orch.testing.fakes import FakeRegistry, fake_services, run_on_fakes, spec_of


def steps(stub) -> tuple[list[Task], Agent]:
    a = Agent(role="Writer", goal="Write", llm=stub.llm)
    return [Task(name="one", description="Step one", agent=a),
            Task(name="two", description="Step two", agent=a, context=["one"]),
            Task(name="three", description="Step three", agent=a, context=["two"])], a


def lose_supervisor_during(stub, match: str, spec, services) -> None:
    """Run ``spec`` until the stub is asked ``match``, then drop it, as a dying
    Supervisor does (its loop stops; its members stay leased)."""
    async def go():
        run = Run(spec, emit=lambda e: None, services=services)
        job = asyncio.ensure_future(run.execute())
        while stub.count(match) == 0:
            await asyncio.sleep(0.01)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)

    asyncio.run(go())


def test_a_resumed_run_asks_nothing_the_journal_holds(stub, tmp_path):
    stub.add_rule(match="Step two", latency=2.0, times=1)
    tasks, a = steps(stub)
    store = open_store(tmp_path)
    lose_supervisor_during(stub, "Step two", spec_of(tasks, [a]), fake_services(store=store))
    result, _ = run_on_fakes(spec_of(tasks, [a], store=store, resume=True))
    assert result.error is None
    assert result.resumed == ["one"]
    assert stub.count("Step one") == 1  # not asked again
    assert stub.count("Step three") == 1
    assert result.outputs["one"].raw in stub.requests_matching("Step two")[-1].prompt


def test_the_lost_supervisors_members_are_reclaimed_and_the_new_one_leases_afresh(stub,
                                                                                  tmp_path):
    stub.add_rule(match="Step two", latency=2.0, times=1)
    tasks, a = steps(stub)
    registry = FakeRegistry()
    store = open_store(tmp_path)
    lose_supervisor_during(stub, "Step two", spec_of(tasks, [a]),
                           fake_services(registry=registry, lessee="sup-1", store=store))
    lost = list(registry.created)
    assert registry.reclaim("sup-1") == len(lost) == 1
    assert all(h._dead for h in lost)
    result, _ = run_on_fakes(spec_of(tasks, [a], resume=True),
                             services=fake_services(registry=registry, lessee="sup-2",
                                                    store=store))
    assert result.error is None
    assert len(registry.created) == 2 and not registry.created[1]._dead
    assert registry.reclaim("sup-1") == 0  # nothing of the lost one is left
