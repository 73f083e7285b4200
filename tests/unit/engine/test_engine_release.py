"""A Supervisor sends a run's result before the calls that unbind and give back its
members (``Services.defer_release``, ``Run.release``): those calls wait for ``release``,
and a release asked before the run closed its pools (its driver left early) still
happens, as they close. On the fakes; no Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Task
from ray_orch.engine.member import AgentMember
from ray_orch.engine.run import Run
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, fake_services, spec_of


class CountingRegistry(FakeRegistry):
    """Members whose handles record the calls made to them, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.pool.starter.start_member = self._start  # type: ignore[method-assign]

    def _start(self, options):
        registry = self

        class Counted(FakeHandle):
            def _call(self, name, args, kwargs, streaming):
                registry.calls.append(name)
                return super()._call(name, args, kwargs, streaming)

        return Counted(AgentMember())


def run_once(stub, *, release_first: bool):
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    spec = spec_of([Task(name="draft", description="Draft it", agent=agent)], [agent])
    registry = CountingRegistry()
    services = fake_services(registry=registry)
    services.defer_release = True
    run = Run(spec, emit=lambda event: None, services=services)

    async def go():
        if release_first:
            run.release()  # asked while the run goes on
        result = await run.execute()
        before = list(registry.calls)
        run.release()
        run.release()  # once is all it does
        await asyncio.sleep(0.05)
        return result, before, list(registry.calls)

    result, before, after = asyncio.run(go())
    return result, before, after


def test_the_unbind_waits_for_release_when_deferred(stub):
    result, before, after = run_once(stub, release_first=False)
    assert result.error is None and "run" in before
    assert "unbind" not in before  # the result was ready first
    assert after.count("unbind") == 1


def test_a_release_asked_before_the_pools_close_happens_as_they_close(stub):
    result, before, after = run_once(stub, release_first=True)
    assert result.error is None and before.count("unbind") == 1
    assert after.count("unbind") == 1
