"""A pool member (``engine/member.py``'s ``AgentMember``) behind a ``FakeHandle``, called
with the records the engine sends (``engine/messages.py``): binding, attempts, calls that
arrive before their binding, late calls of an ended run, batches, cancelling one item,
a manager's question. No Ray."""

from __future__ import annotations

import asyncio

import pytest

from ray_orch import Agent, Task
from ray_orch.core.errors import RunCancelledError
from ray_orch.engine.member import AgentMember
from ray_orch.engine.messages import (
    AttemptRequest,
    BatchRequest,
    Binding,
    Question,
    TaskRequest,
)
from ray_orch.testing.fakes import FakeHandle, MemberLost


def binding_of(stub, run_id: str = "k1") -> tuple[Binding, Agent]:
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"draft": Task(name="draft", description="Draft about {topic}", agent=agent),
             "edit": Task(name="edit", description="Edit the draft", agent=agent)}
    return Binding(run_id=run_id, agents={agent.key(): agent}, tasks=tasks,
                   prewarm=False), agent


def test_a_call_carrying_its_binding_runs_the_named_task(stub):
    stub.reply = lambda req: f"wrote[{req.prompt.count('Draft about ray')}]"
    binding, agent = binding_of(stub)
    handle = FakeHandle(AgentMember())

    async def go():
        return await handle.run.remote(AttemptRequest(
            run_id="k1", agent_key=agent.key(), task_name="draft", inputs={"topic": "ray"},
            bind=binding))

    output = asyncio.run(go())
    assert output.raw == "wrote[1]"
    assert output.metadata["actor_pid"] > 0
    assert handle.target.completed == 1 and handle.target.in_flight == 0


def test_a_call_that_arrives_before_its_binding_waits_for_it(stub):
    binding, agent = binding_of(stub)
    handle = FakeHandle(AgentMember())

    async def go():
        early = handle.run.remote(AttemptRequest(run_id="k1", agent_key=agent.key(),
                                                 task_name="edit"))
        await asyncio.sleep(0.05)
        assert not early.done() and stub.count("Edit the draft") == 0
        await handle.bind.remote(binding)
        return await early

    assert asyncio.run(go()).raw == "ok"
    assert stub.count("Edit the draft") == 1


def test_a_late_call_of_an_unbound_run_runs_nothing(stub):
    binding, agent = binding_of(stub)
    member = AgentMember()

    async def go():
        await member.bind(binding)
        member.unbind("k1")
        await member.run(AttemptRequest(run_id="k1", agent_key=agent.key(), task_name="edit"))

    with pytest.raises(RunCancelledError, match="has ended"):
        asyncio.run(go())
    assert stub.count("Edit the draft") == 0
    assert member.tasks == {} and member.agents == {}


def test_a_batch_yields_every_item_once_with_its_index(stub):
    stub.reply = lambda req: req.prompt.split("Draft about ")[1].split()[0].strip(".")
    binding, agent = binding_of(stub)
    member = AgentMember()

    async def go():
        items = [AttemptRequest(run_id="k1", agent_key=agent.key(), task_name="draft",
                                inputs={"topic": f"item{i}"}, iteration=i) for i in range(5)]
        seen = {}
        async for finished in member.run_many(BatchRequest(run_id="k1", agent_key=agent.key(),
                                                           batch=7, items=items, bind=binding)):
            for index, output, error in finished:
                assert error is None and index not in seen
                seen[index] = output.raw
        return seen

    assert asyncio.run(go()) == {i: f"item{i}" for i in range(5)}


def test_cancelling_one_item_of_a_batch_before_it_starts_cancels_only_it(stub):
    binding, agent = binding_of(stub)
    member = AgentMember()

    async def go():
        member.cancel_one("k1", 3, 0)  # arrives before its batch: remembered
        items = [AttemptRequest(run_id="k1", agent_key=agent.key(), task_name="draft",
                                inputs={"topic": str(i)}) for i in range(2)]
        outcomes = {}
        async for finished in member.run_many(BatchRequest(run_id="k1", agent_key=agent.key(),
                                                           batch=3, items=items, bind=binding)):
            for index, output, error in finished:
                outcomes[index] = (output, error)
        return outcomes

    outcomes = asyncio.run(go())
    assert isinstance(outcomes[0][1], RunCancelledError) and outcomes[0][0] is None
    assert outcomes[1][0].raw == "ok"
    assert stub.count("Draft about 0") == 0 and stub.count("Draft about 1") == 1


def test_a_question_is_one_model_call_as_the_agent(stub):
    stub.reply = '{"answer": "yes"}'
    binding, agent = binding_of(stub)
    member = AgentMember()
    schema = {"title": "answer", "type": "object",
              "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    text = asyncio.run(member.ask(Question(agent_key=agent.key(), prompt="Is it so?",
                                           schema=schema, run_id="k1", bind=binding)))
    assert text == '{"answer": "yes"}'
    assert stub.requests[-1].prompt.endswith("Is it so?")


def test_a_task_that_travels_with_its_call_runs_on_a_bound_agent(stub):
    binding, agent = binding_of(stub)
    member = AgentMember()
    task = Task(description="Summarise {what}", agent=agent)

    async def go():
        await member.bind(binding)
        return await member.run_task(TaskRequest(agent_key=agent.key(), task=task,
                                                 inputs={"what": "logs"}, run_id="k1"))

    assert asyncio.run(go()).raw == "ok"
    assert stub.count("Summarise logs") == 1


def test_a_killed_handle_fails_its_calls_in_flight(stub):
    stub.latency = 2.0
    binding, agent = binding_of(stub)
    handle = FakeHandle(AgentMember())

    async def go():
        call = handle.run.remote(AttemptRequest(run_id="k1", agent_key=agent.key(),
                                                task_name="edit", bind=binding))
        while stub.count("Edit the draft") == 0:
            await asyncio.sleep(0.01)
        handle.kill()
        await call

    with pytest.raises(MemberLost):
        asyncio.run(go())
