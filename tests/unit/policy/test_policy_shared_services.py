"""The services attempts share (``core/shared.py``'s ``SharedServices``) come in with the
run (``Services.shared``, sent to members in ``RunOptions``), never by an import: on the
fakes, a breaker's state lives in the run's breaker "actor" (a ``FakeHandle`` over the
same ``BreakerState`` the ``BreakerActor`` keeps) exactly when the run says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ray_orch import Agent, CircuitBreaker, Task
from ray_orch.core import shared
from ray_orch.policy import breaker as breaker_module
from ray_orch.policy.breaker import BreakerState
from ray_orch.testing.fakes import FakeHandle, fake_services, run_on_fakes, spec_of


class Breakers:
    """What ``BreakerActor`` does, in this process: one ``BreakerState`` per name."""

    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}
        self.calls: list[tuple[str, str]] = []

    def _state(self, name, threshold, timeout) -> BreakerState:
        return self.states.setdefault(name, BreakerState(threshold, timeout))

    def acquire(self, name, threshold, timeout):
        self.calls.append(("acquire", name))
        return self._state(name, threshold, timeout).acquire()

    def record_success(self, name, threshold, timeout):
        self.calls.append(("record_success", name))
        return self._state(name, threshold, timeout).record_success()

    def record_failure(self, name, threshold, timeout):
        self.calls.append(("record_failure", name))
        return self._state(name, threshold, timeout).record_failure()

    def peek(self, name, threshold, timeout):
        return self._state(name, threshold, timeout).state


@pytest.fixture
def cluster(monkeypatch):
    """Shared breakers apply where Ray runs: say it does, for the breaker module only."""
    monkeypatch.setattr(breaker_module, "ray_is_running", lambda: True)
    breakers = Breakers()
    handle = FakeHandle(breakers)
    return breakers, shared.SharedServices(breakers=lambda: handle)


def guarded(stub, name: str) -> tuple[list[Task], Agent]:
    a = Agent(role="Caller", goal="Call", llm=stub.llm)
    breaker = CircuitBreaker(failure_threshold=1, timeout=60, name=name)
    return [Task(name="call", description="Call the API", agent=a, circuit_breaker=breaker,
                 max_retries=0)], a


def test_a_runs_breaker_state_lives_where_its_shared_services_say(stub, cluster):
    breakers, services = cluster
    tasks, a = guarded(stub, "payments")
    result, _ = run_on_fakes(spec_of(tasks, [a]), services=fake_services(shared=services))
    assert result.error is None
    assert breakers.calls == [("acquire", "payments"), ("record_success", "payments")]


def test_without_shared_services_the_state_stays_in_the_member(stub, cluster):
    breakers, _ = cluster
    tasks, a = guarded(stub, "local-only")
    result, _ = run_on_fakes(spec_of(tasks, [a]))
    assert result.error is None and breakers.calls == []


def test_a_breaker_opened_by_one_run_refuses_the_next_runs_call(stub, cluster):
    breakers, services = cluster
    stub.add_rule(match="Call the API", fault="401", times=1)
    tasks, a = guarded(stub, "flaky-api")
    first, _ = run_on_fakes(spec_of(tasks, [a], run_id="r1"),
                            services=fake_services(shared=services))
    assert first.statuses["call"] == "failed"
    assert breakers.states["flaky-api"].state == "open"
    tasks, a = guarded(stub, "flaky-api")  # a new Task, the same breaker by name
    second, _ = run_on_fakes(spec_of(tasks, [a], run_id="r2"),
                             services=fake_services(shared=services))
    assert second.outputs["call"].metadata["circuit_status"] == "open"
    assert second.outputs["call"].raw.startswith("Circuit breaker open")
    assert stub.count("Call the API") == 1  # the second run never called the model


def test_importing_ray_orch_installs_nothing():
    code = ("import sys, ray_orch, ray_orch.api.process\n"
            "from ray_orch.core import shared\n"
            "print(shared.installed() == shared.SharedServices(), 'actors' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]
