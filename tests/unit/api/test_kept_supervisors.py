"""The Supervisors a driver keeps between runs: a private session's stay with it; a
standing runtime's go back to the registry after a grace period unused, or at exit."""

from __future__ import annotations

import time

import pytest

import actors.registry as registry_module
from ray_orch.api import supervisors
from ray_orch.api.supervisors import keep_supervisor, return_idle_supervisors, take_supervisor


class _GiveBack:
    def __init__(self, returned: list[object]) -> None:
        self.returned = returned

    def remote(self, handle: object) -> object:
        self.returned.append(handle)
        return object()


class _Registry:
    """What the driver calls on the registry (its id and ``give_back_supervisor``)."""

    def __init__(self) -> None:
        self._actor_id = object()
        self.returned: list[object] = []
        self.give_back_supervisor = _GiveBack(self.returned)


@pytest.fixture
def standing(monkeypatch):
    monkeypatch.setattr(registry_module, "is_standing", lambda: True)
    yield
    return_idle_supervisors()


def test_a_standing_runtimes_supervisor_is_kept_for_the_next_run(standing):
    registry, handle = _Registry(), object()
    keep_supervisor(registry, handle)
    assert take_supervisor(registry) is handle
    assert registry.returned == []
    assert take_supervisor(registry) is None


def test_it_goes_back_after_the_grace_period_unused(standing, monkeypatch):
    monkeypatch.setattr(supervisors, "_STANDING_GRACE_S", 0.05)
    registry, handle = _Registry(), object()
    keep_supervisor(registry, handle)
    assert _returned(registry) == [handle]
    assert take_supervisor(registry) is None  # not both kept and returned


def _returned(registry: _Registry) -> list[object]:
    deadline = time.monotonic() + 30
    while not registry.returned and time.monotonic() < deadline:
        time.sleep(0.01)
    return registry.returned


def test_its_grace_counts_from_its_last_run(standing, monkeypatch):
    monkeypatch.setattr(supervisors, "_STANDING_GRACE_S", 3600.0)
    registry, handle = _Registry(), object()
    keep_supervisor(registry, handle)
    first = supervisors._standing[id(handle)][0]
    assert take_supervisor(registry) is handle  # the next run took it ...
    assert id(handle) not in supervisors._standing  # ... it is not returned meanwhile
    keep_supervisor(registry, handle)  # ... and kept it again after
    assert supervisors._standing[id(handle)][0] >= first
    assert registry.returned == []
    monkeypatch.setattr(supervisors, "_STANDING_GRACE_S", 0.0)
    with supervisors._kept:
        supervisors._kept.notify()
    assert _returned(registry) == [handle]


def test_at_exit_the_idle_ones_go_back_and_one_in_a_run_does_not(standing):
    registry, idle, busy = _Registry(), object(), object()
    keep_supervisor(registry, busy)
    assert take_supervisor(registry) is busy  # in a run (lost there: never kept again)
    keep_supervisor(registry, idle)
    assert return_idle_supervisors() == 1
    assert registry.returned == [idle]
    assert take_supervisor(registry) is None


def test_a_private_sessions_supervisor_stays(monkeypatch):
    monkeypatch.setattr(registry_module, "is_standing", lambda: False)
    registry, handle = _Registry(), object()
    keep_supervisor(registry, handle)
    assert return_idle_supervisors() == 0
    assert take_supervisor(registry) is handle
    assert registry.returned == []


def test_a_supervisor_kept_on_one_connection_is_not_taken_on_another(standing, monkeypatch):
    registry, handle = _Registry(), object()
    monkeypatch.setattr(supervisors, "driver_job", lambda: "01000000")
    keep_supervisor(registry, handle)
    monkeypatch.setattr(supervisors, "driver_job", lambda: "02000000")  # after ray.init again
    assert take_supervisor(registry) is None
    monkeypatch.setattr(supervisors, "driver_job", lambda: "01000000")
    assert take_supervisor(registry) is handle


class _OlderRegistry(_Registry):
    """A standing runtime an older ray-orch started: its registry leases without a
    driver's job id, and does not take back an ended job's Supervisor."""

    class _Lease:
        def remote(self) -> str:
            return "leased"

    def __init__(self) -> None:
        super().__init__()
        self.lease_supervisor = self._Lease()

    def __getattr__(self, name: str):
        raise AttributeError(name)  # (as an actor handle does for a method it lacks)


def test_on_an_older_runtime_it_leases_as_before_and_gives_back_at_once(standing):
    registry, handle = _OlderRegistry(), object()
    assert supervisors.lease_supervisor(registry) == "leased"
    keep_supervisor(registry, handle)
    assert registry.returned == [handle] and take_supervisor(registry) is None
