"""The hierarchical manager (``engine/hierarchy.py``, ``engine/manager.py``) on the fakes:
the manager model (asked through a member's ``ask``) assigns ready tasks to agents; a
wrong answer is asked again with the error, then the fallback assigns. No Ray."""

from __future__ import annotations

import re

from ray_orch import Agent, Task
from ray_orch.testing.fakes import run_on_fakes, spec_of

MANAGER = "You are the project manager"
WHO = {"scope": "Writer", "review": "Reviewer", "report": "Writer"}


def ready_ids(prompt: str) -> list[str]:
    block = prompt.split("Ready tasks (id: description):")[1].split("\n\n")[0]
    return re.findall(r"^- (\w+):", block, flags=re.M)


def team(stub) -> tuple[list[Task], list[Agent]]:
    agents = [Agent(role="Writer", goal="Write findings", llm=stub.llm),
              Agent(role="Reviewer", goal="Review papers", llm=stub.llm)]
    tasks = [Task(name="scope", description="Define the scope"),
             Task(name="review", description="Review the literature", context=["scope"]),
             Task(name="report", description="Write the report", context=["review"])]
    return tasks, agents


def test_the_manager_assigns_each_task_to_the_agent_it_names(stub):
    stub.add_rule(match=MANAGER, reply=lambda req: {"assignments": [
        {"task": t, "agent": WHO[t], "reason": f"{WHO[t]} fits"} for t in ready_ids(req.prompt)]})
    tasks, agents = team(stub)
    result, _ = run_on_fakes(spec_of(tasks, agents, mode="hierarchical",
                                     manager=stub.llm))
    assert result.error is None
    for name, output in result.outputs.items():
        assert output.agent == WHO[name]
        assert output.metadata["assigned_by"] == "manager"
        assert output.metadata["assignment_reason"] == f"{WHO[name]} fits"
    work = [r for r in stub.requests if MANAGER not in r.prompt]
    assert len(work) == 3  # each task ran once
    assert len(stub.requests_matching(MANAGER)) == 3  # one round per ready task
    schema = stub.requests_matching(MANAGER)[0].response_format["json_schema"]["schema"]
    assert "Reviewer" in str(schema)  # the roles are an enum of the answer's schema


def test_a_wrong_answer_is_asked_again_with_the_error_then_the_fallback_assigns(stub):
    answers = iter([{"assignments": [{"task": "scope", "agent": "Astronaut", "reason": "?"}]},
                    {"assignments": [{"task": "scope", "agent": "Writer", "reason": "ok"}]}])
    stub.add_rule(match=MANAGER, reply=lambda req: next(answers, {"assignments": []}))
    tasks, agents = team(stub)
    result, _ = run_on_fakes(spec_of(tasks, agents, mode="hierarchical", manager=stub.llm))
    asks = stub.requests_matching(MANAGER)
    assert "agent 'Astronaut' does not exist" in asks[1].prompt
    assert result.outputs["scope"].metadata["assigned_by"] == "manager"
    assert result.outputs["report"].metadata["assigned_by"] == "fallback"
    assert result.outputs["review"].agent == "Reviewer"  # role/goal words break the tie
