"""Lines (``core/line.py``) on a real Ray: a chain's outputs, hand-offs, a run's start, a
member's call and the run's result also go as copies on this machine's Unix sockets. Whichever of copy and call
comes first is taken, once: every step runs once, with its context, and a value only
cloudpickle can carry goes by the call alone."""

from __future__ import annotations

import pydantic
import pytest
import ray

from ray_orch import Agent, Process, Task
from ray_orch.core import line
from ray_orch.core.sync import background_loop

pytestmark = [pytest.mark.usefixtures("ray_session"),
              pytest.mark.skipif(not line.usable(), reason="lines need Linux")]

STEPS = 6


def chain(stub, agents=3, **options):
    crew = [Agent(role=f"Writer {i}", goal="Write", llm=stub.llm) for i in range(agents)]
    tasks = {f"step{i}": Task(description=f"Step {i}: improve the text",
                              agent=crew[i % agents], **options) for i in range(STEPS)}
    return Process(tasks=tasks, agents=crew, name="lines")


def test_a_chain_round_three_agents_goes_by_lines_and_runs_each_step_once(stub):
    for i in range(STEPS):
        stub.add_rule(match=f"Step {i}:", reply=f"text v{i}")
    process = chain(stub)
    # The first runs open the connections (an inbox not found yet, a member's before its
    # bind, is dialed again a second later); later runs use them.
    for run in range(1, 61):
        results = process.sequential()
        assert [results[f"step{i}"].raw for i in range(STEPS)] == [
            f"text v{i}" for i in range(STEPS)]
        assert stub.count() == STEPS * run  # no step ran twice
        assert [e.kind for e in process.events].count("run_started") == 1
        assert [e.kind for e in process.events][-1] == "run_finished"
        if run >= 3 and _taken(process):
            break
    for i in range(1, STEPS):
        prompts = [r.prompt for r in stub.requests_matching(f"Step {i}:")]
        assert len(prompts) == run and all(f"text v{i - 1}" in p for p in prompts)
    # Copies were taken: outputs by the Supervisor, hand-offs and the first step's call
    # by members, results by this driver.
    assert _taken(process), f"no copy taken in {run} runs"


def _taken(process) -> bool:
    supervisor = ray.get(process._supervisor.info.remote())
    members = ray.get([h.info.remote() for h in _members()])
    return (supervisor["line_replies"] > 0 and sum(m["line_deliveries"] for m in members) > 0
            and sum(m["line_starts"] for m in members) > 0
            and line._lines[background_loop()].taken >= 1)


def test_an_output_only_cloudpickle_can_carry_comes_by_the_call(stub):
    class Verdict(pydantic.BaseModel):  # local: plain pickle cannot carry it
        ok: bool
        note: str

    stub.add_rule(match="Judge", reply='{"ok": true, "note": "fine"}')
    judge = Agent(role="Judge", goal="Judge", llm=stub.llm)
    process = Process(tasks={"judge": Task(description="Judge the text", agent=judge,
                                           output_pydantic=Verdict)}, agents=[judge])
    for _ in range(2):
        verdict = process.workflow()["judge"].pydantic
        assert verdict is not None and (verdict.ok, verdict.note) == (True, "fine")
    assert stub.count() == 2


def _members():
    from actors.registry import get_registry

    return ray.get(get_registry().members.remote())
