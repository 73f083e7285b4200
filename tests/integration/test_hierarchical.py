"""Hierarchical process: a scripted manager (the stub) assigns ready tasks to agents."""

from __future__ import annotations

import json
import re

import pytest

from ray_orch import (
    Agent,
    InvalidTaskFieldError,
    MissingAgentError,
    ModelNotConfiguredError,
    Process,
    Task,
)

pytestmark = pytest.mark.usefixtures("ray_session")

MANAGER = "You are the project manager"


def ready_ids(prompt: str) -> list[str]:
    block = prompt.split("Ready tasks (id: description):")[1].split("\n\n")[0]
    return re.findall(r"^- (\w+):", block, flags=re.M)


def research(stub):
    researchers = [
        Agent(role="Literature Reviewer", goal="Review academic papers", llm=stub.llm),
        Agent(role="Data Analyst", goal="Analyze datasets", llm=stub.llm),
        Agent(role="Report Writer", goal="Write findings", llm=stub.llm),
    ]
    tasks = {
        "define_scope": Task(description="Define research scope and objectives",
                             expected_output="Research plan"),
        "literature_review": Task(description="Review relevant literature",
                                  expected_output="Literature summary"),
        "data_collection": Task(description="Collect and prepare data",
                                expected_output="Prepared dataset"),
        "analysis": Task(description="Analyze data and draw insights",
                         expected_output="Analysis results"),
        "report": Task(description="Write comprehensive report", expected_output="Final report"),
    }
    return tasks, researchers


WHO = {"define_scope": "Report Writer", "literature_review": "Literature Reviewer",
       "data_collection": "Data Analyst", "analysis": "Data Analyst", "report": "Report Writer"}


def work(stub, text):
    return [r for r in stub.requests_matching(text) if MANAGER not in r.prompt]


def scripted_manager(request):
    return {"assignments": [{"task": t, "agent": WHO[t], "reason": f"{WHO[t]} fits {t}"}
                            for t in ready_ids(request.prompt)]}


def test_guide_research_example_with_scripted_manager(stub):
    stub.add_rule(match=MANAGER, reply=scripted_manager)
    tasks, researchers = research(stub)
    process = Process(tasks=tasks, agents=researchers, manager_llm=stub.llm)

    results = process.hierarchical()

    assert list(results) == list(tasks) or sorted(results) == sorted(tasks)
    for name, output in results.items():
        assert output.agent == WHO[name]
        assert output.metadata["assigned_by"] == "manager"
        assert output.metadata["assignment_reason"] == f"{WHO[name]} fits {name}"
    jobs = [r for r in stub.requests if MANAGER not in r.prompt]
    assert [re.search(r"You are ([\w ]+)\.", r.prompt).group(1) for r in jobs] == \
        [WHO[t] for t in tasks]  # each task ran once, on the agent the manager chose
    # dependencies held: each task saw the one before it
    assert "--- define_scope ---" in work(stub, "Review relevant literature")[0].prompt
    decision = stub.requests_matching(MANAGER)[0]
    props = decision.response_format["json_schema"]["schema"]
    assert "Report Writer" in json.dumps(props)  # the agent roles are an enum


def test_one_manager_call_assigns_independent_tasks_in_parallel(stub):
    stub.latency = 0.3
    stub.add_rule(match=MANAGER, reply=scripted_manager, latency=0)
    tasks, researchers = research(stub)
    tasks["literature_review"].context = ["define_scope"]
    tasks["data_collection"].context = ["define_scope"]
    tasks["analysis"].context = ["literature_review", "data_collection"]
    Process(tasks=tasks, agents=researchers, manager_llm=stub.llm).hierarchical()

    lit = work(stub, "Review relevant literature")[0]
    data = work(stub, "Collect and prepare data")[0]
    assert lit.t_start < data.t_end and data.t_start < lit.t_end  # in flight together
    second_round = [r for r in stub.requests_matching(MANAGER)
                    if "literature_review" in ready_ids(r.prompt)]
    assert len(second_round) == 1
    assert sorted(ready_ids(second_round[0].prompt)) == ["data_collection", "literature_review"]


def test_invalid_answer_is_reasked_with_the_error_then_falls_back(stub):
    answers = iter([
        {"assignments": [{"task": "define_scope", "agent": "Astronaut", "reason": "?"}]},
        {"assignments": [{"task": "define_scope", "agent": "Report Writer", "reason": "ok"}]},
    ])
    stub.add_rule(match=MANAGER, reply=lambda req: next(answers, {"assignments": []}))
    tasks, researchers = research(stub)
    results = Process(tasks=tasks, agents=researchers, manager_llm=stub.llm).hierarchical()

    asks = stub.requests_matching(MANAGER)
    assert "agent 'Astronaut' does not exist" in asks[1].prompt
    assert results["define_scope"].metadata["assigned_by"] == "manager"
    # later rounds: empty answers are re-asked (bounded), then the fallback assigns
    fallback = results["report"].metadata
    assert fallback["assigned_by"] == "fallback"
    assert "were not assigned" in fallback["assignment_reason"]
    assert results["data_collection"].agent == "Data Analyst"  # role/goal match breaks ties


def test_manager_down_falls_back_without_hanging(stub):
    stub.add_rule(match=MANAGER, fault="500")
    tasks, researchers = research(stub)
    results = Process(tasks=tasks, agents=researchers, manager_llm=stub.llm).hierarchical()
    assert len(results) == 5
    assert all(o.metadata["assigned_by"] == "fallback" for o in results.values())
    assert "manager unavailable" in results["analysis"].metadata["assignment_reason"]


def test_manager_call_limit_is_a_hard_bound(stub):
    stub.add_rule(match=MANAGER, reply={"assignments": []})
    tasks, researchers = research(stub)
    results = Process(tasks=tasks, agents=researchers, manager_llm=stub.llm,
                      max_manager_calls=2).hierarchical()
    assert len(stub.requests_matching(MANAGER)) == 2
    assert len(results) == 5 and all(t.status == "completed" for t in tasks.values())


def test_bad_input(stub, monkeypatch):
    tasks, researchers = research(stub)
    with pytest.raises(MissingAgentError, match="needs agents"):
        Process(tasks=tasks, agents=[], manager_llm=stub.llm).hierarchical()
    stranger = Agent(role="Stranger", goal="x", llm=stub.llm)
    tasks["report"].agent = stranger
    with pytest.raises(InvalidTaskFieldError, match=r"'report'.*not in the process's agents"):
        Process(tasks=tasks, agents=researchers, manager_llm=stub.llm).hierarchical()
    tasks["report"].agent = None
    monkeypatch.delenv("RAY_ORCH_MODEL", raising=False)
    monkeypatch.setenv("RAY_ORCH_DISABLE_EMBEDDED", "1")
    with pytest.raises(ModelNotConfiguredError, match="manager_llm"):
        Process(tasks=tasks, agents=researchers).hierarchical()
    assert not stub.requests  # all before any LLM call
