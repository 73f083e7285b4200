"""The guide's workflow sections on Ray against the stub: routing, loops, fan-in, async."""

from __future__ import annotations

import asyncio
import csv
import re

import pytest
from workflows import customer_service as guide_customer_service

from ray_orch import Agent, DecisionError, LoopLimitError, Process, StepLimitError, Task

pytestmark = pytest.mark.usefixtures("ray_session")


def customer_service(stub):
    return guide_customer_service(stub.llm)


@pytest.mark.parametrize(("category", "tech", "expected"), [
    ("Technical", "resolved", ["categorize", "tech_support", "send_confirmation"]),
    ("technical", " Needs_Escalation ", ["categorize", "tech_support", "escalate",
                                         "send_confirmation"]),
    (" BILLING", None, ["categorize", "billing_support", "send_confirmation"]),
    ("complex", None, ["categorize", "escalate", "send_confirmation"]),
    ("simple", None, ["categorize", "quick_response", "send_confirmation"]),
])
def test_customer_service_takes_the_right_path(stub, category, tech, expected):
    stub.add_rule(match="Categorize customer inquiry", reply=category)
    if tech:
        stub.add_rule(match="Resolve technical issue", reply=tech)
    tasks, agents = customer_service(stub)

    results = Process(tasks=tasks, agents=agents).workflow()

    assert sorted(results) == sorted(expected)
    ran = [t for t in tasks if t in expected]
    assert all(tasks[t].status == "completed" for t in ran)
    assert all(tasks[t].status == "skipped" for t in tasks if t not in expected)
    asked = [r for r in stub.requests]
    assert len(asked) == len(expected)  # each task on the path asked once, nothing else
    decision = stub.requests_matching("Categorize customer inquiry")[0]
    schema = decision.response_format["json_schema"]["schema"]
    assert schema["properties"]["decision"]["enum"] == ["technical", "billing", "complex",
                                                        "simple"]


def test_decision_without_match_is_a_typed_error(stub):
    stub.add_rule(match="Categorize customer inquiry", reply="weather")
    tasks, agents = customer_service(stub)
    tasks["categorize"].validation_steps = 1
    with pytest.raises(DecisionError, match="categorize"):
        Process(tasks=tasks, agents=agents).workflow()
    assert len(stub.requests_matching("Categorize")) == 2  # re-asked once, then error
    assert "is not one of" in stub.requests_matching("Categorize")[1].prompt


def test_decision_default_route(stub):
    stub.add_rule(match="Categorize customer inquiry", reply="weather")
    tasks, agents = customer_service(stub)
    tasks["categorize"].condition["default"] = ["quick_response"]
    results = Process(tasks=tasks, agents=agents).workflow()
    assert "quick_response" in results
    assert results["categorize"].metadata["decision"] == "default"


def test_route_starts_every_listed_task_in_parallel(stub):
    stub.latency = 0.3
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = {
        "triage": Task(description="Triage it", agent=agent, task_type="decision",
                       condition={"both": ["left", "right"], "none": []}),
        "left": Task(description="Left branch", agent=agent),
        "right": Task(description="Right branch", agent=agent),
    }
    stub.add_rule(match="Triage it", reply="both")
    Process(tasks=tasks, agents=[agent]).workflow()
    left, right = stub.requests_matching("Left branch")[0], stub.requests_matching("Right branch")[0]
    assert left.t_start < right.t_end and right.t_start < left.t_end


def test_fan_out_fan_in_over_chunks_csv(stub, tmp_path):
    path = tmp_path / "chunks.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["chunk_id", "rows"])
        for i in range(200):
            writer.writerow([i, f"rows {i * 10}-{i * 10 + 9}"])
    stub.add_rule(match=r"Analyze data chunk", reply=lambda req: "analysis of " +
                  req.prompt.split("Analyze data chunk ")[1].split("\n")[0])
    splitter = Agent(role="Splitter", goal="Split", llm=stub.llm)
    analyzer = Agent(role="Analyzer", goal="Analyze", llm=stub.llm, pool_size=2)
    aggregator = Agent(role="Aggregator", goal="Aggregate", llm=stub.llm)
    tasks = {
        "split": Task(description="Split dataset into chunks", agent=splitter,
                      expected_output="List of data chunks"),
        "analyze_chunk": Task(description="Analyze data chunk {chunk_id}", agent=analyzer,
                              task_type="loop", loop_data=str(path), context=["split"],
                              expected_output="Chunk analysis"),
        "aggregate": Task(description="Combine all analyses", agent=aggregator,
                          context=["analyze_chunk"], expected_output="Combined analysis report"),
    }
    results = Process(tasks=tasks, agents=[splitter, analyzer, aggregator]).workflow()

    loop = results["analyze_chunk"]
    assert [o.raw for o in loop.iterations] == [f"analysis of {i}" for i in range(200)]
    assert len(stub.requests_matching("Analyze data chunk")) == 200
    agg_prompt = stub.requests_matching("Combine all analyses")[0].prompt
    positions = [agg_prompt.index(f"analysis of {i}\n") if i < 199 else
                 agg_prompt.index(f"analysis of {i}") for i in range(200)]
    assert positions == sorted(positions)  # all 200, in input order
    pids = {o.metadata["actor_pid"] for o in loop.iterations}
    assert len(pids) == 2  # both pool members did work


def test_loop_over_upstream_output_and_max_iterations(stub):
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    stub.add_rule(match="List the cities", reply="- Paris\n- Lima\n- Oslo")
    tasks = {
        "list": Task(description="List the cities", agent=agent),
        "visit": Task(description="Describe {item}", agent=agent, task_type="loop",
                      context=["list"]),
    }
    results = Process(tasks=tasks, agents=[agent]).workflow()
    asked = sorted(re.search(r"Describe \w+", r.prompt).group(0)
                   for r in stub.requests_matching("Describe"))
    assert asked == ["Describe Lima", "Describe Oslo", "Describe Paris"]
    assert len(results["visit"].iterations) == 3

    tasks["visit"].max_iterations = 2
    with pytest.raises(LoopLimitError, match="max_iterations=2"):
        Process(tasks=tasks, agents=[agent]).workflow()


def test_parallel_analyses_with_aworkflow(stub):
    stub.latency = 0.3
    analysts = [Agent(role=r, goal="Analyze", llm=stub.llm) for r in ("Sales", "Marketing",
                                                                      "Support")]
    reporter = Agent(role="Reporter", goal="Report", llm=stub.llm)
    tasks = {
        "analyze_sales": Task(description="Analyze sales data", agent=analysts[0],
                              async_execution=True),
        "analyze_marketing": Task(description="Analyze marketing data", agent=analysts[1],
                                  async_execution=True),
        "analyze_support": Task(description="Analyze support tickets", agent=analysts[2],
                                async_execution=True),
        "combine_results": Task(description="Combine all analyses", agent=reporter,
                                context=["analyze_sales", "analyze_marketing",
                                         "analyze_support"]),
    }

    async def run_parallel():
        process = Process(tasks=tasks, agents=[*analysts, reporter])
        return await process.aworkflow()

    results = asyncio.run(run_parallel())
    assert len(results) == 4
    three = [r for r in stub.requests if "Combine" not in r.prompt]
    assert len(three) == 3
    assert max(r.t_start for r in three) < min(r.t_end for r in three)
    combine = stub.requests_matching("Combine all analyses")[0]
    for name in ("analyze_sales", "analyze_marketing", "analyze_support"):
        assert f"--- {name} ---" in combine.prompt


def test_bounded_cycle_through_decision(stub):
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    stub.add_rule(match="Review the draft", reply=["revise", "revise", "approve"])
    tasks = {
        "draft": Task(description="Write the draft", agent=agent, next_tasks=["review"]),
        "review": Task(description="Review the draft", agent=agent, task_type="decision",
                       condition={"revise": ["draft"], "approve": ["publish"]}),
        "publish": Task(description="Publish it", agent=agent),
    }
    results = Process(tasks=tasks, agents=[agent]).workflow()
    assert "publish" in results
    assert len(stub.requests_matching("Write the draft")) == 3

    stub.clear()
    stub.clear_rules()
    stub.add_rule(match="Review the draft", reply="revise")
    with pytest.raises(StepLimitError, match="max_visits=3"):
        Process(tasks=tasks, agents=[agent], max_visits=3).workflow()


def test_critical_path_follows_the_route_taken(stub):
    stub.latency = 0.1
    stub.add_rule(match="Categorize customer inquiry", reply="billing")
    stub.add_rule(match="Handle billing inquiry", latency=0.4)
    tasks, agents = customer_service(stub)
    process = Process(tasks=tasks, agents=agents)
    process.workflow()
    path = [step.task for step in process.metrics.critical_path()]
    assert path == ["categorize", "billing_support", "send_confirmation"]
