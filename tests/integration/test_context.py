"""Context selection and budgets, on Ray against the stub."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ray_orch import Agent, ContextBudgetError, Process, Task

pytestmark = pytest.mark.usefixtures("ray_session")


class Findings(BaseModel):
    key_findings: str
    recommendations: str
    raw_notes: str


def test_context_fields_put_only_those_fields_in_the_prompt(stub):
    stub.add_rule(match="Research", reply={"key_findings": "KF-1", "recommendations": "REC-1",
                                           "raw_notes": "SECRET-NOTES " * 50})
    agent = Agent(role="Analyst", goal="Analyze", llm=stub.llm)
    tasks = {
        "t3": Task(description="Research part three", agent=agent, output_json=Findings),
        "t5": Task(description="Research part five", agent=agent, output_json=Findings),
        "summary": Task(description="Summarize findings", agent=agent, context=["t3", "t5"],
                        context_fields=["key_findings", "recommendations"]),
    }
    Process(tasks=tasks, agents=[agent]).workflow()
    prompt = stub.requests_matching("Summarize findings")[0].prompt
    assert prompt.count("KF-1") == 2 and prompt.count("REC-1") == 2
    assert "SECRET-NOTES" not in prompt


def long_chain(stub, **summary_options):
    stub.add_rule(match="Write chapter", reply=lambda r: ("word " * 300) + r.prompt[-20:])
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {f"ch{i}": Task(description=f"Write chapter {i}", agent=agent) for i in range(4)}
    tasks["summary"] = Task(description="Summarize the book", agent=agent,
                            context=[f"ch{i}" for i in range(4)], context_budget=700,
                            **summary_options)
    return tasks, agent


def test_budget_fail_is_a_clear_error_before_the_call(stub):
    tasks, agent = long_chain(stub)
    with pytest.raises(ContextBudgetError, match=r"'summary'.*over its context_budget of 700"):
        Process(tasks=tasks, agents=[agent]).workflow()
    assert stub.count("Summarize the book") == 0


def test_budget_keep_recent_drops_the_oldest(stub):
    tasks, agent = long_chain(stub, context_overflow="keep_recent")
    results = Process(tasks=tasks, agents=[agent]).workflow()
    prompt = stub.requests_matching("Summarize the book")[0].prompt
    assert "--- ch3 ---" in prompt and "--- ch2 ---" in prompt and "--- ch0 ---" not in prompt
    note = results["summary"].metadata["context_budget"]
    assert note["dropped"] == ["ch0", "ch1"] and note["tokens_before"] > 700


def test_budget_summarize_asks_the_model(stub):
    stub.add_rule(match="Summarise the following material", reply="SHORT SUMMARY")
    tasks, agent = long_chain(stub, context_overflow="summarize")
    Process(tasks=tasks, agents=[agent]).workflow()
    prompt = next(r for r in stub.requests_matching("Summarize the book")
                  if "Summarise the following" not in r.prompt).prompt
    assert "SHORT SUMMARY" in prompt and "--- ch0 ---" not in prompt
