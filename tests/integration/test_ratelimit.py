"""Rate limits: the pacing limiter and its AIMD window (plain Python, a fake clock), the
client side without Ray, and a fan-out on Ray against a stub that enforces a limit."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from ray_orch import InvalidTaskFieldError, LLMError
from ray_orch.model.client import LLMConfig
from ray_orch.model.ratelimit import (
    DEFAULT_CEILING,
    LIMIT_KEYS,
    Limiter,
    Limits,
    limiter_name,
    limits_of,
)
from ray_orch.model.ratelimit.client import estimate_tokens, limited, strip_limit_keys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(limits: Limits, **kwargs) -> tuple[Limiter, Clock]:
    clock = Clock()
    kwargs.setdefault("headroom", 1.0)
    return Limiter(limits, clock=clock, **kwargs), clock


def rel(slots: list[float], clock: Clock) -> list[float]:
    return [round(s - clock.now, 6) for s in slots]


# -- pacing ------------------------------------------------------------------------------


def test_requests_are_paced_evenly_and_idle_time_is_not_banked():
    limiter, clock = make(Limits(rpm=60))
    assert rel(limiter.reserve([1, 1, 1]).slots, clock) == [0.0, 1.0, 2.0]
    clock.now += 10  # idle: the next call starts now, not in a burst of saved-up slots
    assert rel(limiter.reserve([1, 1]).slots, clock) == [0.0, 1.0]


def test_headroom_keeps_rates_below_the_limit():
    limiter, _ = make(Limits(rpm=600), headroom=0.95)
    slots = limiter.reserve([1] * 3).slots
    assert slots[1] - slots[0] == pytest.approx(60 / 570)


def test_burst_lets_the_first_calls_start_together():
    limiter, clock = make(Limits(rpm=60), burst=3)
    assert rel(limiter.reserve([1] * 5).slots, clock) == [0.0, 0.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize("limit, window", [(20, 2.0), (60, 6.0), (600, 60.0)])
def test_slots_never_exceed_a_sliding_window(limit, window):
    # The stub (like many providers) counts calls over a sliding window; paced slots at
    # the same per-minute rate never put more than the limit in any window.
    limiter, clock = make(Limits(rpm=limit * 60 / window), headroom=0.95)
    rng = random.Random(7)
    slots: list[float] = []
    for _ in range(400):
        clock.now += rng.expovariate(20.0)  # arrivals faster than the limit
        lease = limiter.reserve([1] * rng.randint(1, 5))
        slots += lease.slots
        for _ in lease.slots:
            limiter.report(lease.id, "success")
    slots.sort()
    j = 0
    for i, start in enumerate(slots):
        while slots[j] <= start - window:
            j += 1
        assert i - j + 1 <= limit
    # ... and the rate achieved is the limit minus the headroom.
    rate = (len(slots) - 1) / (slots[-1] - slots[0]) * window
    assert rate == pytest.approx(0.95 * limit, rel=0.01)


def test_slots_given_back_early_are_handed_out_again():
    limiter, clock = make(Limits(rpm=60))
    lease = limiter.reserve([1] * 4)  # slots at 0, 1, 2, 3
    clock.now += 0.5
    limiter.report(lease.id, "unused", slot_in=1.5)  # the slot at 2 is not needed
    limiter.report(lease.id, "unused", slot_in=-0.5)  # the slot at 0 passed: gone
    assert rel(limiter.reserve([1, 1]).slots, clock) == [1.5, 3.5]  # the hole, then new
    assert limiter.snapshot()["recycled"] == 1


def test_tokens_per_minute_pace_by_estimate_and_usage_corrects_it():
    limiter, clock = make(Limits(tpm=6000))  # 100 tokens a second
    lease = limiter.reserve([100, 200, 100])
    assert rel(lease.slots, clock) == [0.0, 1.0, 3.0]
    # The first call really used 300 tokens: 2 s more to pay for.
    limiter.report(lease.id, "success", tokens_used=300, tokens_estimate=100)
    assert rel(limiter.reserve([100]).slots, clock) == [6.0]
    # An over-estimate is refunded.
    limiter.report(lease.id, "success", tokens_used=0, tokens_estimate=200)
    assert rel(limiter.reserve([100]).slots, clock) == [5.0]


def test_both_budgets_apply_the_tighter_one_wins():
    limiter, clock = make(Limits(rpm=60, tpm=60_000))  # 1 req/s, 1000 tokens/s
    assert rel(limiter.reserve([10, 10, 3000, 10]).slots, clock) == [0.0, 1.0, 2.0, 5.0]


# -- the AIMD window ---------------------------------------------------------------------


def test_window_bounds_calls_in_flight():
    limiter, _ = make(Limits(max_in_flight=4))
    lease = limiter.reserve([1] * 6)
    assert len(lease.slots) == 4 and limiter.in_flight == 4
    assert limiter.reserve([1]) is None
    limiter.report(lease.id, "success")
    assert len(limiter.reserve([1, 1]).slots) == 1


def test_a_429_halves_the_window_once_per_round_and_pauses():
    limiter, clock = make(Limits(rpm=6000, max_in_flight=16))
    first = limiter.reserve([1] * 10)
    limiter.report(first.id, "rate_limit", retry_after=2.0)
    assert limiter.window == 5.0  # half of the 10 calls in flight, not of the ceiling
    # Other answers to calls granted before the decrease do not decrease it again.
    limiter.report(first.id, "rate_limit")
    assert limiter.window == 5.0
    assert limiter.snapshot()["paused_for"] == pytest.approx(2.0)
    # A 429 to a call granted after the decrease does.
    for _ in range(8):
        limiter.report(first.id, "success")
    later = limiter.reserve([1] * 6)
    assert len(later.slots) == 5  # the new window
    assert rel(later.slots, clock)[0] == 2.0  # after the Retry-After
    limiter.report(later.id, "rate_limit")
    assert limiter.window == 2.5
    assert limiter.snapshot()["decreases"] == 2


def test_additive_increase_only_while_the_window_binds():
    limiter, _ = make(Limits(max_in_flight=64))
    lease = limiter.reserve([1] * 8)
    limiter.report(lease.id, "rate_limit")
    assert limiter.window == 4.0
    # Not binding yet (no call was refused): successes do not grow it.
    for _ in range(3):
        limiter.report(lease.id, "success")
    assert limiter.window == 4.0
    limiter.report(lease.id, "success")
    limiter.report(lease.id, "success")
    limiter.report(lease.id, "success")
    limiter.report(lease.id, "success")  # all 8 reported
    busy = limiter.reserve([1] * 10)
    assert len(busy.slots) == 4  # refused 6: the window binds
    for _ in range(4):  # one window of successes: about +1
        limiter.report(busy.id, "success")
    assert 4.9 < limiter.window < 5.0
    for _ in range(200):
        lease = limiter.reserve([1] * 100)
        for _ in lease.slots:
            limiter.report(lease.id, "success")
    assert limiter.window <= 64


def test_window_has_a_floor_and_resets_after_idle():
    limiter, clock = make(Limits(max_in_flight=8), idle_reset=30.0)
    for _ in range(5):
        lease = limiter.reserve([1])
        limiter.report(lease.id, "rate_limit")
    assert limiter.window == 1.0
    clock.now += 31
    assert len(limiter.reserve([1] * 10).slots) == 8


def test_leases_of_vanished_callers_are_reclaimed():
    limiter, clock = make(Limits(max_in_flight=4))
    limiter.reserve([1] * 4, ttl=10.0)
    assert limiter.reserve([1]) is None
    clock.now += 11
    assert len(limiter.reserve([1] * 4).slots) == 4
    assert limiter.snapshot()["expired"] == 4


def test_default_ceiling_and_reconfiguration():
    limiter, _ = make(Limits(rpm=60))
    assert limiter.window == DEFAULT_CEILING
    limiter.configure(Limits(rpm=60, max_in_flight=10))
    assert limiter.window == 10


# -- configuration -----------------------------------------------------------------------


def test_limits_come_from_options_then_environment(monkeypatch):
    monkeypatch.delenv("RAY_ORCH_RPM", raising=False)
    monkeypatch.delenv("RAY_ORCH_TPM", raising=False)
    assert limits_of(LLMConfig(model="m")) is None
    config = LLMConfig.from_spec({"model": "m", "rpm": 600, "tpm": 100_000, "temperature": 0})
    assert limits_of(config) == Limits(rpm=600, tpm=100_000)
    assert strip_limit_keys(config.options) == {"temperature": 0}
    monkeypatch.setenv("RAY_ORCH_RPM", "120")
    assert limits_of(LLMConfig(model="m")) == Limits(rpm=120)
    assert limits_of(config) == Limits(rpm=600, tpm=100_000)  # options win
    with pytest.raises(InvalidTaskFieldError, match="'rpm' must be a positive number"):
        limits_of(LLMConfig(model="m", options={"rpm": "lots"}))
    # ray-orch's own options, never sent to the provider (supports_vision: MCP images)
    assert frozenset({"rpm", "tpm", "max_in_flight", "supports_vision"}) == LIMIT_KEYS


def test_names_estimates_and_no_secrets():
    a = LLMConfig(model="openai/GPT-4o mini", base_url="http://127.0.0.1:1/v1",
                  api_key="sk-test-SECRET-123")
    b = LLMConfig(model="openai/GPT-4o mini", base_url="http://127.0.0.1:2/v1")
    assert limiter_name(a).startswith("rayorch-ratelimit-openai-gpt-4o-mini-")
    assert limiter_name(a) != limiter_name(b)
    assert "SECRET" not in limiter_name(a)
    assert estimate_tokens([{"role": "user", "content": "x" * 4000}], {}) == 1000 + 4 + 256


# -- the client side without Ray ---------------------------------------------------------


class Reply:
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens


@pytest.fixture
def no_ray(monkeypatch):
    import ray_orch.model.ratelimit.client

    monkeypatch.setattr(ray_orch.model.ratelimit.client, "ray_is_running", lambda: False)


async def test_limited_without_limits_just_calls(no_ray, monkeypatch):
    monkeypatch.delenv("RAY_ORCH_RPM", raising=False)
    monkeypatch.delenv("RAY_ORCH_TPM", raising=False)
    import ray_orch.model.ratelimit.client as rl

    calls = []

    async def call():
        calls.append(1)
        return Reply(5)

    assert isinstance(await limited(LLMConfig(model="free"), call, tokens_estimate=10), Reply)
    assert calls == [1]
    assert not any("free" in name for gates in rl._gates.values() for name in gates)


async def test_limited_paces_calls_in_process(no_ray):
    config = LLMConfig(model=f"local-pace-{time.time_ns()}", options={"rpm": 1200})
    starts: list[float] = []

    async def call():
        starts.append(time.monotonic())
        return Reply(5)

    await asyncio.gather(*(limited(config, call, tokens_estimate=10) for _ in range(6)))
    interval = 60 / (1200 * 0.95)
    starts.sort()
    # Paced: a call may start up to one interval late, never two calls in one interval.
    assert all(b - a >= 0.9 * interval for a, b in zip(starts, starts[2:], strict=False))
    assert starts[-1] - starts[0] >= 4 * interval


async def test_other_calls_take_slots_after_the_first_call_returns(no_ray):
    # A process's first call spends a while in the client library before it sends:
    # calls slotted behind it would leave together with it.
    config = LLMConfig(model=f"local-first-{time.time_ns()}", options={"rpm": 6000})
    events: list[str] = []

    async def call():
        first = not events
        events.append("start")
        if first:
            await asyncio.sleep(0.2)
        events.append("end")
        return Reply(5)

    await asyncio.gather(*(limited(config, call, tokens_estimate=10) for _ in range(3)))
    assert events[:2] == ["start", "end"]


async def test_a_stalled_event_loop_does_not_fire_a_burst(no_ray):
    import ray_orch.model.ratelimit.client as rl

    # A call that wakes up long after its slot (the loop was busy) takes a fresh slot
    # instead of firing together with the calls scheduled after it.
    config = LLMConfig(model=f"local-stall-{time.time_ns()}", options={"rpm": 600})
    interval = 60 / (600 * 0.95)
    starts: list[float] = []

    async def call():
        starts.append(time.monotonic())
        if len(starts) == 2:  # (the first call warms up; the others are slotted after it)
            time.sleep(0.5)  # blocks the loop while the next slots pass
        return Reply(5)

    await asyncio.gather(*(limited(config, call, tokens_estimate=10) for _ in range(6)))
    starts.sort()
    assert all(b - a >= 0.9 * interval for a, b in zip(starts, starts[2:], strict=False))
    assert rl._local[limiter_name(config)].snapshot()["unused"] >= 2  # late slots given back


async def test_limited_reports_a_429_to_the_window(no_ray):
    import ray_orch.model.ratelimit.client as rl

    config = LLMConfig(model=f"local-429-{time.time_ns()}",
                       options={"rpm": 60_000, "max_in_flight": 8})

    async def slow():
        await asyncio.sleep(0.05)
        return Reply(5)

    async def limited_429():
        await asyncio.sleep(0.01)
        raise LLMError("429 from model", status_code=429, retry_after=0.2)

    await limited(config, slow, tokens_estimate=1)  # the first call warms the gate up
    tasks = [asyncio.ensure_future(limited(config, slow, tokens_estimate=1)) for _ in range(5)]
    await asyncio.sleep(0)
    with pytest.raises(LLMError):
        await limited(config, limited_429, tokens_estimate=1)
    await asyncio.gather(*tasks)
    snapshot = rl._local[limiter_name(config)].snapshot()
    assert snapshot["rate_limit"] == 1 and snapshot["decreases"] == 1
    assert snapshot["window"] == 3.0  # half of the 6 calls in flight
    assert snapshot["in_flight"] == 0


# -- the batching client against the actor's code, without Ray ---------------------------


class FakeHandle:
    """The ``RateLimiter`` actor's own class, called in-process like a handle."""

    def __init__(self, broken: bool = False) -> None:
        from actors.rate_limiter import RateLimiter

        self.actor = RateLimiter.__ray_metadata__.modified_class()
        self.broken = broken
        self.calls = 0

    def __getattr__(self, method: str):
        outer = self

        class Method:
            def remote(self, *args, **kwargs):
                outer.calls += 1
                if outer.broken:
                    raise ConnectionError("the limiter actor is gone")
                return asyncio.ensure_future(getattr(outer.actor, method)(*args, **kwargs))

        return Method()


@pytest.fixture
def fake_actor(monkeypatch):
    import ray_orch.model.ratelimit.client as client

    handles: list[FakeHandle] = []
    broken = [False]

    def get(name: str) -> FakeHandle:
        handles.append(FakeHandle(broken=broken[0]))
        return handles[-1]

    # The port the RateLimiter actor implements, served by a fake.
    monkeypatch.setattr(client, "ray_is_running", lambda: True)
    monkeypatch.setattr(client, "_cluster_limiters", get)
    return handles, broken


async def test_a_fan_out_costs_a_few_round_trips(fake_actor):
    handles, _ = fake_actor
    config = LLMConfig(model=f"remote-fan-{time.time_ns()}", options={"rpm": 600_000})

    async def call():
        await asyncio.sleep(0.01)
        return Reply(5)

    await asyncio.gather(*(limited(config, call, tokens_estimate=10) for _ in range(300)))
    [handle] = handles
    stats = await handle.actor.stats()
    assert stats["acquires"] <= 12, stats  # one for the first call, then batches
    await asyncio.sleep(0.3)  # outcomes flushed, spares given back
    stats = await handle.actor.stats()
    assert stats["in_flight"] == 0 and stats["success"] == 300, stats


async def test_an_unreachable_limiter_falls_back_to_this_process(fake_actor):
    handles, broken = fake_actor
    broken[0] = True
    config = LLMConfig(model=f"remote-gone-{time.time_ns()}", options={"rpm": 60_000})

    async def call():
        return Reply(5)

    results = await asyncio.gather(*(limited(config, call, tokens_estimate=10)
                                     for _ in range(5)))
    assert len(results) == 5
    assert len(handles) == 3  # three tries to reach it, then the local limiter


# -- on Ray, against a stub that enforces a limit ----------------------------------------


@pytest.mark.slow
def test_fan_out_stays_within_the_providers_rate_limit(ray_session):
    from actors.rate_limiter import get_rate_limiter
    from ray_orch import Agent, Process, Task
    from ray_orch.testing import StubLLMServer

    rpm, n = 600, 150
    # 600 rpm, counted by the stub over a 6 s sliding window (60 calls), so a burst
    # shows up within the test's ~16 s.
    with StubLLMServer(reply="done", rpm_limit=rpm // 10, rpm_window=6.0) as stub:
        agent = Agent(role="Analyst", goal="Analyze", llm={**stub.llm, "rpm": rpm},
                      pool_size=2)
        tasks = {"analyze": Task(description="Analyze item {item}", agent=agent,
                                 task_type="loop", loop_data=[f"n{i}" for i in range(n)])}
        results = Process(tasks=tasks, agents=[agent]).workflow()
        requests = stub.requests
        name = limiter_name(agent.llm_config)

    assert len(results["analyze"].iterations) == n
    answered_429 = sum(r.status == 429 for r in requests)
    assert answered_429 < 0.05 * len(requests), f"{answered_429} of {len(requests)} got 429"
    ok = sorted(r.t_start for r in requests if r.status == 200)
    achieved = (len(ok) - 1) / (ok[-1] - ok[0]) * 60
    assert achieved >= 0.9 * rpm, f"{achieved:.0f} rpm of {rpm}"
    assert all("rpm" not in r.body for r in requests)  # ray-orch's key never reaches the provider
    limiter = get_rate_limiter(name)
    for _ in range(40):  # spare slots and the last outcomes come back within ~0.2 s
        stats = ray_session.get(limiter.stats.remote())
        if stats["in_flight"] == 0:
            break
        time.sleep(0.05)
    assert stats["in_flight"] == 0, stats
    # Batched grants: far fewer limiter round trips than calls.
    assert stats["acquires"] < n / 3, stats
    print(f"\nrate limit: {achieved:.0f} rpm of {rpm} ({achieved / rpm:.0%}), "
          f"429s {answered_429}/{len(requests)}, limiter round trips {stats['acquires']} "
          f"for {n} calls")
