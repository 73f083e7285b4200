"""Loop iterations go to members in batches (``Pool._batched`` and the member's
``run_many``): one call per member per turn of the event loop, not one per item, each
item's failure its own. On the fakes; no Ray."""

from __future__ import annotations

from ray_orch import Agent, Task
from ray_orch.engine.member import AgentMember
from ray_orch.engine.messages import BatchRequest
from ray_orch.testing.fakes import FakeHandle, FakeRegistry, fake_services, run_on_fakes, spec_of


class CountingRegistry(FakeRegistry):
    """Members whose handles count the calls made to them, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []
        self.pool.starter.start_member = self._start  # type: ignore[method-assign]

    def _start(self, options):
        registry = self

        class Counted(FakeHandle):
            def _call(self, name, args, kwargs, streaming):
                registry.calls.append((name, args))
                return super()._call(name, args, kwargs, streaming)

        handle = Counted(AgentMember())
        self.created.append(handle)
        return handle


def test_twenty_iterations_take_one_call_not_twenty(stub):
    a = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = [Task(name="fan", description="Handle item {item} now", agent=a,
                  task_type="loop", loop_data=list(range(20)))]
    registry = CountingRegistry()
    result, _ = run_on_fakes(spec_of(tasks, [a]), services=fake_services(registry=registry))
    assert result.error is None and stub.count("Handle item") == 20
    batches = [args[0] for name, args in registry.calls if name == "run_many"]
    assert [name for name, _ in registry.calls if name == "run"] == []
    assert len(batches) == 1 and isinstance(batches[0], BatchRequest)
    assert [item.iteration for item in batches[0].items] == list(range(20))
    assert batches[0].bind is not None  # the member's first call carries the binding


def test_each_iteration_fails_on_its_own(stub):
    stub.add_rule(match="Handle item 3 now", fault="500", times=10)
    a = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = [Task(name="fan", description="Handle item {item} now", agent=a,
                  task_type="loop", loop_data=list(range(6)), max_retries=0)]
    result, _ = run_on_fakes(spec_of(tasks, [a], on_failure="continue"))
    assert stub.count("Handle item 3 now") == 1
    for i in (0, 1, 2, 4, 5):
        assert stub.count(f"Handle item {i} now") == 1  # the others ran once each
    assert result.statuses["fan"] == "failed"
    assert "stub fault 500" in result.errors["fan"]


def test_iterations_spread_over_a_pool_of_three(stub):
    stub.latency = 0.05
    a = Agent(role="Worker", goal="Work", llm=stub.llm, pool_size=3, max_concurrency=2)
    tasks = [Task(name="fan", description="Handle item {item} now", agent=a,
                  task_type="loop", loop_data=list(range(12)))]
    registry = CountingRegistry()
    result, _ = run_on_fakes(spec_of(tasks, [a]), services=fake_services(registry=registry))
    assert result.error is None
    assert sorted(h.target.completed for h in registry.created) == [4, 4, 4]
