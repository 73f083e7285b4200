"""A run leaves the definitions the user built as they were: Tasks and Agents (their
``status`` / ``result`` are read-only views of the last run, kept beside them). On real
Ray, against the stub: a sequential run, a workflow with a decision and a loop, and a
PraisonAI ``AgentTeam`` (variables, content, an ``exit`` route)."""

from __future__ import annotations

import pytest
import ray.cloudpickle as pickle

from ray_orch import Agent, AgentTeam, Process, Task

pytestmark = pytest.mark.usefixtures("ray_session")


def _snapshot(tasks: list[Task], agents: list[Agent]) -> dict[str, bytes]:
    """Every attribute of every task and agent, pickled (a new attribute, a changed one
    or a changed list inside one changes the bytes). The agents' resolved models are kept
    beside them, so even resolving one writes nothing onto an agent."""
    shot = {f"task {t.id}": pickle.dumps({k: _value(v) for k, v in vars(t).items()})
            for t in tasks}
    shot.update({f"agent {a.role}": pickle.dumps(dict(vars(a))) for a in agents})
    return shot


def _value(value: object) -> object:
    # A task's agent is the same object (compared by identity; agents are shot apart).
    return ("agent", id(value)) if isinstance(value, Agent) else value


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


def test_a_sequential_run_writes_nothing_onto_its_tasks_and_agents(stub):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    editor = Agent(role="Editor", goal="Edit", llm=stub.llm)
    tasks = {"draft": Task(description="Draft a note", agent=writer),
             "edit": Task(description="Edit it", agent=editor, context=["draft"])}
    process = Process(tasks=tasks, agents=[writer, editor])
    before = _snapshot(list(tasks.values()), [writer, editor])

    results = process.sequential()

    assert _changed(before, _snapshot(list(tasks.values()), [writer, editor])) == []
    assert [tasks[n].status for n in tasks] == ["completed", "completed"]
    assert tasks["edit"].result is not None and tasks["edit"].result.raw == results["edit"].raw
    assert not hasattr(tasks["draft"], "_peers") and "status" not in vars(tasks["draft"])
    assert writer._config is None and writer.llm_config.model  # resolved, kept beside it


def test_a_workflow_with_a_decision_and_a_loop_writes_nothing_onto_them(stub):
    stub.add_rule(match="Classify the batch", reply="items")
    judge = Agent(role="Judge", goal="Classify", llm=stub.llm)
    worker = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = {
        "classify": Task(description="Classify the batch", agent=judge, task_type="decision",
                         condition={"items": ["each"], "none": ["report"]}),
        "each": Task(description="Handle {item}", agent=worker, task_type="loop",
                     loop_data=[{"item": "a"}, {"item": "b"}], next_tasks=["report"]),
        "report": Task(description="Report", agent=worker, context=["each"],
                       handle_missing_context=True),
    }
    process = Process(tasks=tasks, agents=[judge, worker])
    before = _snapshot(list(tasks.values()), [judge, worker])

    results = process.workflow()

    assert _changed(before, _snapshot(list(tasks.values()), [judge, worker])) == []
    assert sorted(results) == ["classify", "each", "report"]
    assert len(results["each"].iterations or []) == 2
    assert {n: t.status for n, t in tasks.items()} == {
        "classify": "completed", "each": "completed", "report": "completed"}
    # The graph of the run (built once, on the driver) holds what used to go on tasks.
    assert process.last_run is not None
    assert "classify" in process.last_run.graph.route_descriptions


def test_an_agent_team_run_writes_nothing_onto_its_tasks_and_agents(stub):
    stub.add_rule(match="Route the weather", reply="exit")  # {topic} filled in the run
    scout = Agent(name="Scout", role="Scout", goal="Look", llm=stub.llm)
    scribe = Agent(name="Scribe", role="Scribe", goal="Write")  # the team's llm fills it
    route = Task(name="route", description="Route the {topic}", agent=scout,
                 task_type="decision", condition={"more": ["write"], "exit": ["exit"]},
                 is_start=True)
    write = Task(name="write", description="Write about {topic}", agent=scribe)
    tasks = [route, write]
    team = AgentTeam(agents=[scout, scribe], tasks=tasks, process="workflow",
                     variables={"topic": "weather"}, llm=stub.llm)
    before = _snapshot(tasks, [scout, scribe])

    answer = team.start("Today is sunny.")

    assert _changed(before, _snapshot(tasks, [scout, scribe])) == []
    assert route.description == "Route the {topic}" and scribe.llm is None
    # The last task ("write") never ran (the route exited): PraisonAI's dict comes back.
    assert answer["task_status"] == {0: "completed", 1: "not started"}
    assert team.get_task_status(0) == "completed" and route.status == "completed"
    assert team.get_task_status(1) == "not started" and write.result is None
    prompts = [r.prompt for r in stub.requests]
    assert any("Route the weather" in p and "Today is sunny." in p for p in prompts)
