"""A member's attempts begun by a copy of their call (``engine/starts.py``): once, from
whichever of the copy and the call comes first; a cancel stops what a copy began. No Ray."""

from __future__ import annotations

import asyncio

import pytest

from ray_orch.core.errors import RunCancelledError
from ray_orch.engine.messages import AttemptRequest
from ray_orch.engine.starts import Starts


class Attempts:
    """A member's attempts: each waits until released, and is counted."""

    def __init__(self) -> None:
        self.begun: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        self.fail = False

    async def run(self, request: AttemptRequest) -> str:
        self.begun.append(request.task_name)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.task_name)
            raise
        if self.fail:
            raise ValueError("the model said no")
        return f"out {request.task_name}"


def request(key: str = "k1") -> AttemptRequest:
    return AttemptRequest(run_id="r", agent_key="a", task_name="t", start=key)


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_copy_that_comes_first_begins_it_and_the_call_takes_it():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.copy("k1", request())
        await turns()
        assert attempts.begun == ["t"]  # before its call came
        call = asyncio.ensure_future(starts.call(request()))
        attempts.release.set()
        assert await call == "out t"
        starts.copy("k1", request())  # the same copy again: nothing begins
        await turns()
        return attempts.begun, starts.taken

    assert asyncio.run(scenario()) == (["t"], 1)


def test_a_call_that_comes_first_runs_it_and_its_late_copy_is_ignored():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        attempts.release.set()
        assert await starts.call(request()) == "out t"
        starts.copy("k1", request())
        await turns()
        return attempts.begun, starts.taken

    assert asyncio.run(scenario()) == (["t"], 0)


def test_a_cancel_stops_what_the_copy_began_and_keeps_a_late_copy_from_beginning():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.copy("k1", request("k1"))
        await turns()
        starts.cancel("k1")  # the run was cancelled before the call arrived
        await turns()
        starts.cancel("k2")  # cancelled before its copy came
        starts.copy("k2", request("k2"))
        await turns()
        return attempts.begun, attempts.cancelled, starts.begun

    assert asyncio.run(scenario()) == (["t"], ["t"], {})


def test_a_call_that_comes_after_its_cancel_ends_cancelled_and_runs_nothing():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.cancel("k1")
        with pytest.raises(RunCancelledError):
            await starts.call(request("k1"))
        return attempts.begun

    assert asyncio.run(scenario()) == []


def test_a_cancel_after_the_attempt_finished_leaves_its_output_to_the_call():
    async def scenario():
        attempts = Attempts()
        attempts.release.set()
        starts = Starts(attempts.run)
        starts.copy("k1", request())
        await turns()
        starts.cancel("k1")  # the run winds down: what finished is kept
        return await starts.call(request()), attempts.begun, attempts.cancelled

    assert asyncio.run(scenario()) == ("out t", ["t"], [])


def test_cancelling_the_call_cancels_the_attempt_its_copy_began():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.copy("k1", request())
        await turns()
        call = asyncio.ensure_future(starts.call(request()))
        await turns()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return attempts.cancelled

    assert asyncio.run(scenario()) == ["t"]


def test_the_call_raises_the_failure_of_the_attempt_its_copy_began():
    async def scenario():
        attempts = Attempts()
        attempts.fail = True
        starts = Starts(attempts.run)
        starts.copy("k1", request())
        await turns()
        attempts.release.set()
        await turns()
        with pytest.raises(ValueError, match="the model said no"):
            await starts.call(request())

    asyncio.run(scenario())


def test_what_a_copy_began_and_no_call_claimed_stops_when_its_run_ends():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.copy("k1", request("k1"))
        other = AttemptRequest(run_id="r2", agent_key="a", task_name="u", start="k2")
        starts.copy("k2", other)
        await turns()
        starts.drop("r")  # run r unbound: its unclaimed attempt is cancelled, r2's runs on
        await turns()
        return list(attempts.cancelled), list(starts.begun)

    assert asyncio.run(scenario()) == (["t"], ["k2"])


def test_what_is_not_a_request_begins_nothing():
    async def scenario():
        attempts = Attempts()
        starts = Starts(attempts.run)
        starts.copy("k1", {"task_name": "t"})
        await turns()
        return attempts.begun

    assert asyncio.run(scenario()) == []
