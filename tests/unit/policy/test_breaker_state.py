"""The breaker state machine, with a fake clock."""

from ray_orch.policy.breaker import BreakerState


def test_closed_open_half_open_closed():
    now = [0.0]
    state = BreakerState(failure_threshold=3, timeout=60, clock=lambda: now[0])
    for _ in range(2):
        assert state.acquire() == "closed"
        state.record_failure()
    assert state.acquire() == "closed"
    assert state.record_failure() == "open"
    assert state.acquire() == "open"
    now[0] = 59.9
    assert state.acquire() == "open"
    now[0] = 60.0
    assert state.acquire() == "half_open"
    assert state.acquire() == "open"  # only one probe at a time
    assert state.record_success() == "closed"
    assert state.acquire() == "closed"


def test_failed_probe_reopens():
    now = [0.0]
    state = BreakerState(failure_threshold=1, timeout=10, clock=lambda: now[0])
    state.record_failure()
    now[0] = 10
    assert state.acquire() == "half_open"
    assert state.record_failure() == "open"
    now[0] = 15
    assert state.acquire() == "open"
