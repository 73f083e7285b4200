"""The registry's pooling (``engine/pooling.py``'s ``MemberPool``) through ``FakeRegistry``,
which wraps the same class the ``ActorRegistry`` actor wraps: warm reuse, the idle
limit, reaping, a lost Supervisor's members reclaimed, kept Supervisors. No Ray."""

from __future__ import annotations

from ray_orch.engine.messages import LeaseRequest
from ray_orch.testing.fakes import FakeRegistry


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(registry: FakeRegistry, count: int, *, agent: str | None = None,
          lessee: str | None = None, placement: str = "cpu") -> list:
    return registry.lease(LeaseRequest(placement_key=placement, count=count, agent_key=agent,
                                       lessee=lessee))


def test_members_given_back_are_leased_again_before_any_is_started():
    registry = FakeRegistry()
    first = lease(registry, 2)
    registry.give_back("cpu", first, agent_key="a")
    again = lease(registry, 3)
    assert set(first) <= set(again)
    assert len(registry.created) == 3  # two warm, one new
    assert registry.size() == 0


def test_a_lease_prefers_members_that_served_the_same_agent():
    registry = FakeRegistry()
    served_a, served_b = lease(registry, 1), lease(registry, 1)
    registry.give_back("cpu", served_a, agent_key="agent-a")
    registry.give_back("cpu", served_b, agent_key="agent-b")
    assert lease(registry, 1, agent="agent-a") == served_a
    assert lease(registry, 1, agent="agent-b") == served_b


def test_placements_do_not_mix():
    registry = FakeRegistry()
    gpu = lease(registry, 1, placement="gpu")
    registry.give_back("gpu", gpu)
    cpu = lease(registry, 1, placement="cpu")
    assert cpu != gpu and registry.idle["gpu"] == gpu


def test_beyond_the_idle_limit_given_back_members_stop():
    registry = FakeRegistry(idle_limit=2)
    handles = lease(registry, 3)
    registry.give_back("cpu", handles)
    assert registry.size() == 2
    assert registry.stopped == handles[2:]
    assert handles[2]._dead  # the fake's stop kills it, as ray.kill would


def test_idle_members_are_reaped_after_the_ttl_and_not_before():
    clock = Clock()
    registry = FakeRegistry(idle_ttl=30.0, clock=clock)
    early, late = lease(registry, 1), lease(registry, 1)
    registry.give_back("cpu", early)
    clock.now += 20
    registry.give_back("cpu", late)
    clock.now += 15  # early idle 35 s, late 15 s
    assert registry.reap() == 1
    assert registry.stopped == early and registry.idle["cpu"] == late
    clock.now += 15
    assert registry.reap() == 1
    assert registry.stopped == early + late and registry.size() == 0


def test_a_member_in_use_is_never_reaped():
    clock = Clock()
    registry = FakeRegistry(idle_ttl=1.0, clock=clock)
    busy = lease(registry, 1)
    clock.now += 100
    assert registry.reap() == 0
    assert registry.members() == busy and not busy[0]._dead


def test_a_lost_supervisors_members_are_reclaimed_and_others_kept():
    registry = FakeRegistry()
    lost = lease(registry, 2, lessee="sup-1")
    alive = lease(registry, 1, lessee="sup-2")
    assert registry.reclaim("sup-1") == 2
    assert all(h._dead for h in lost) and not alive[0]._dead
    # Given back late by a dying run, they are not kept: they are no longer owned.
    registry.give_back("cpu", lost)
    assert registry.size() == 0
    registry.give_back("cpu", alive)
    assert registry.idle["cpu"] == alive


def test_a_member_given_back_is_no_longer_reclaimed_with_its_lessee():
    registry = FakeRegistry()
    handles = lease(registry, 1, lessee="sup-1")
    registry.give_back("cpu", handles)
    assert registry.reclaim("sup-1") == 0
    assert registry.idle["cpu"] == handles


def test_forgotten_members_leave_the_warm_set():
    registry = FakeRegistry()
    handles = lease(registry, 2)
    registry.give_back("cpu", handles)
    registry.forget(handles[:1])
    assert registry.idle["cpu"] == handles[1:]
    assert lease(registry, 1) == handles[1:]


def test_prestart_fills_up_to_the_count_once():
    registry = FakeRegistry(idle_limit=3)
    assert registry.prestart("cpu", 2, {}) == 2
    assert registry.prestart("cpu", 2, {}) == 0
    assert registry.prestart("cpu", 10, {}) == 1  # up to the idle limit
    assert registry.size() == 3


def test_supervisors_are_kept_for_the_next_run_up_to_four():
    registry = FakeRegistry()
    supervisors = [registry.lease_supervisor() for _ in range(5)]
    assert len(set(map(id, supervisors))) == 5
    for handle in supervisors:
        registry.give_back_supervisor(handle)
    assert registry.pool.supervisors == supervisors[:4]
    assert registry.stopped == supervisors[4:]
    assert registry.lease_supervisor() is supervisors[3]


def test_idle_supervisors_are_reaped_with_the_ttl():
    clock = Clock()
    registry = FakeRegistry(idle_ttl=10.0, clock=clock)
    supervisor = registry.lease_supervisor()
    registry.give_back_supervisor(supervisor)
    clock.now += 11
    assert registry.reap() == 1
    assert registry.stopped == [supervisor] and registry.pool.supervisors == []


def test_supervisors_of_ended_drivers_are_found_and_come_back():
    registry = FakeRegistry()
    kept_by_a = registry.lease_supervisor("job-a")
    kept_by_b = registry.lease_supervisor("job-b")
    untracked = registry.lease_supervisor()  # a driver that did not say (a private one)
    assert registry.pool.orphans({"job-a", "job-b"}) == []
    assert registry.pool.orphans({"job-a"}) == [kept_by_b]  # b ended keeping it
    registry.give_back_supervisor(kept_by_b)  # (what the Ray registry then does)
    assert registry.pool.orphans({"job-a"}) == []
    assert registry.lease_supervisor("job-c") is kept_by_b  # warm for the next script
    registry.give_back_supervisor(kept_by_a)  # a gave its own back
    assert registry.pool.orphans(set()) == [kept_by_b]
    registry.reclaim(registry.pool._id(kept_by_b))  # lost: forgotten
    assert registry.pool.orphans(set()) == [] and untracked is not None


def test_a_supervisor_given_back_twice_is_kept_once_and_a_stopped_one_not_again():
    registry = FakeRegistry()
    supervisor = registry.lease_supervisor("job-a")
    registry.give_back_supervisor(supervisor)  # taken back for its ended job ...
    registry.give_back_supervisor(supervisor)  # ... then its driver's late call
    assert registry.pool.supervisors == [supervisor]
    assert registry.lease_supervisor() is supervisor and registry.lease_supervisor() \
        is not supervisor  # not handed out twice
    registry.reclaim(registry.pool._id(supervisor))  # lost: no longer owned
    registry.give_back_supervisor(supervisor)
    assert supervisor not in registry.pool.supervisors
