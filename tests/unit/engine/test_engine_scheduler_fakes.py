"""The scheduler (``engine/scheduler.py``) driving a run on the fakes: decisions route and
the other branches never start, loops run each item, joins wait, the guide's graceful
degradation. Real members call the stub model; no Ray."""

from __future__ import annotations

from ray_orch import Agent, Task
from ray_orch.testing.fakes import run_on_fakes, spec_of


def test_the_guides_support_routing_takes_one_way_through_two_decisions(stub):
    stub.add_rule(match="Categorize customer inquiry", reply="technical")
    stub.add_rule(match="Resolve technical issue", reply="needs_escalation")
    support = Agent(role="Support", goal="Handle inquiries", llm=stub.llm)
    tech = Agent(role="Technical", goal="Solve technical issues", llm=stub.llm)
    tasks = [
        Task(name="categorize", description="Categorize customer inquiry", agent=support,
             task_type="decision", condition={"technical": ["tech_support"],
                                              "simple": ["quick_response"]}),
        Task(name="tech_support", description="Resolve technical issue", agent=tech,
             task_type="decision", condition={"resolved": ["send_confirmation"],
                                              "needs_escalation": ["escalate"]}),
        Task(name="escalate", description="Handle complex case", agent=support,
             next_tasks=["send_confirmation"]),
        Task(name="quick_response", description="Send automated response", agent=support,
             next_tasks=["send_confirmation"]),
        Task(name="send_confirmation", description="Send resolution confirmation",
             agent=support),
    ]
    result, events = run_on_fakes(spec_of(tasks, [support, tech]))
    assert result.error is None
    ran = [e.task for e in events if e.kind == "task_finished" and e.status == "completed"]
    assert ran == ["categorize", "tech_support", "escalate", "send_confirmation"]
    assert result.statuses["quick_response"] == "skipped"
    assert stub.count("Send automated response") == 0
    assert [e.data["route"] for e in events if e.kind == "decision"] == \
        ["technical", "needs_escalation"]


def test_a_loop_runs_its_task_once_per_item_with_the_item_in_the_prompt(stub):
    stub.reply = lambda req: req.prompt.split("Summarise ")[1].split()[0].upper()
    a = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="each", description="Summarise {item} briefly", agent=a,
                  task_type="loop", loop_data=["alpha", "beta", "gamma"])]
    result, _ = run_on_fakes(spec_of(tasks, [a]))
    assert result.error is None
    assert sorted(r.prompt.split("Summarise ")[1].split()[0]
                  for r in stub.requests_matching("Summarise")) == ["alpha", "beta", "gamma"]
    output = result.outputs["each"]
    assert output.raw == "ALPHA\nBETA\nGAMMA"  # the items' outputs in the items' order
    assert [o.metadata["iteration"] for o in output.iterations] == [0, 1, 2]


def test_a_fallback_runs_only_when_the_primary_failed_and_the_report_goes_on(stub):
    stub.add_rule(match="detailed analysis", fault="500", times=10)
    a = Agent(role="Analyst", goal="Analyse", llm=stub.llm)
    tasks = [Task(name="primary", description="Perform detailed analysis", agent=a,
                  max_retries=0),
             Task(name="fallback", description="Perform basic analysis", agent=a,
                  condition_on_previous_failure=True),
             Task(name="report", description="Generate report", agent=a,
                  context=["primary", "fallback"], handle_missing_context=True)]
    result, _ = run_on_fakes(spec_of(tasks, [a], on_failure="continue"))
    assert result.statuses["primary"] == "failed"
    assert result.statuses["fallback"] == "completed"
    assert result.statuses["report"] == "completed"
    report = stub.requests_matching("Generate report")[0].prompt
    assert result.outputs["fallback"].raw in report


def test_a_fallback_does_not_run_when_the_primary_succeeded(stub):
    a = Agent(role="Analyst", goal="Analyse", llm=stub.llm)
    tasks = [Task(name="primary", description="Perform detailed analysis", agent=a),
             Task(name="fallback", description="Perform basic analysis", agent=a,
                  condition_on_previous_failure=True)]
    result, _ = run_on_fakes(spec_of(tasks, [a]))
    assert result.statuses["primary"] == "completed"
    assert result.statuses["fallback"] == "skipped"
    assert stub.count("basic analysis") == 0
