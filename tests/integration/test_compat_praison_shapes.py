"""PraisonAI's script shapes that used to break, run unchanged but for their import line
(``tests/compat/``) against the stub server: self-routing loops, team hooks and
``{{variables}}``, agents that chat (tools, history, structured output, guardrails),
unnamed agents, the guardrail hook, decisions without a condition or with tools, string
context, and a task two branches reach (run once)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from ray_orch import Agent, AgentTeam, Task, UnknownTaskError
from ray_orch.testing import StubLLMServer

COMPAT = Path(__file__).resolve().parent / "compat"


@pytest.fixture
def praison_env(stub, monkeypatch, ray_session):
    """PraisonAI's environment, pointing at the stub (an OpenAI-compatible base URL)."""
    monkeypatch.delenv("RAY_ORCH_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("OPENAI_MODEL_NAME", "stub-model")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")
    return stub


def run_script(name, capsys):
    runpy.run_path(str(COMPAT / name), run_name="__main__")
    return capsys.readouterr()


def line(out, label):
    return next(x for x in out.splitlines() if x.startswith(label))[len(label):].strip()


def test_a_loop_whose_condition_routes_back_to_itself(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Collect the customer records", reply={"items": ["r1", "r2", "r3"]})
    stub.add_rule(match="Process one record", reply="processed")
    out = run_script("loop_self_route.py", capsys).out
    assert eval(line(out, "STATUS:")) == {0: "completed", 1: "completed"}
    assert line(out, "ITERATIONS:") == "3"  # every item once: the route back is the loop
    assert stub.count("Process one record") == 3


def test_team_hooks_and_variables(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Research the topic", reply="AI notes")
    stub.add_rule(match="List 3 facts", reply="three facts")
    out = run_script("team_hooks.py", capsys).out
    assert "Starting task: research (ID: 0)" in out and "Starting task: facts (ID: 1)" in out
    assert "Completed task: research: AI notes" in out
    assert out.index("Completed task: research") < out.index("Starting task: facts")
    (research,) = [r.prompt for r in stub.requests_matching("Research the topic")]
    assert "Research the topic: artificial intelligence" in research  # Task(variables=...)
    (facts,) = [r.prompt for r in stub.requests_matching("List 3 facts")]
    assert "List 3 facts about REST APIs" in facts and "{REST APIs}" not in facts
    assert line(out, "RESULT:") == "three facts"
    # the run's text does not stay in the user's task
    assert line(out, "DESCRIPTION AFTER:") == "Research the topic: {{topic}}"


def _chat_model(request):
    last = request.messages[-1]
    if last["role"] == "tool":
        return f"Weather: {last['content']}"
    if request.tools and "Paris" in last["content"]:
        return StubLLMServer.tool_call("get_weather", {"city": "Paris"})
    if "Oslo" in last["content"]:
        return {"city": "Oslo", "temperature": -3}
    if "Rome" in last["content"]:
        return {"city": "Rome", "temperature": 25}
    if "Greet" in last["content"]:
        return "Hello, please come in" if "rejected" in last["content"] else "Hello"
    return f"turns seen: {sum(m['role'] == 'user' for m in request.messages)}"


def test_agents_that_chat(praison_env, capsys):
    stub = praison_env
    stub.reply = _chat_model
    out = run_script("agent_chat.py", capsys).out
    assert line(out, "START:") == "Weather: It is 21 degrees in Paris"
    assert "looking up the weather in Paris" in out  # the tool ran, its print shown
    assert line(out, "CHAT:") == "turns seen: 2"  # the first turn is in the history
    assert line(out, "HISTORY:") == "4"
    assert line(out, "RUN:") == "turns seen: 1"  # clear_history() forgot it
    assert line(out, "ARUN:") == "turns seen: 2"
    assert line(out, "JSON:") == "-3" and line(out, "PYDANTIC:") == "Rome"
    oslo = next(r for r in stub.requests if "Oslo" in r.prompt)
    assert oslo.response_format is not None  # the schema went to the model
    assert line(out, "GUARDED:") == "Hello, please come in"  # the guardrail sent it back
    assert stub.count("Greet the customer") == 2


def test_two_unnamed_agents_without_tasks(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Summarise the benefits", reply="Solar is cheap")
    stub.add_rule(match="Translate the summary", reply="Le solaire est bon marche")
    out = run_script("unnamed_agents.py", capsys).out
    assert line(out, "RESULT:") == "Le solaire est bon marche"
    assert eval(line(out, "NAMES:")) == ["Assistant", "Assistant_2"]
    (translate,) = [r.prompt for r in stub.requests_matching("Translate the summary")]
    assert "Solar is cheap" in translate


def test_the_guardrail_examples_private_hook(praison_env, capsys):
    out = run_script("guardrail_hook.py", capsys).out
    assert "Good email result: PASSED" in out
    assert "Bad email result: FAILED: Email must include a subject line" in out
    assert "Guardrail function: None" in out and "No guardrail result: PASSED" in out
    assert not praison_env.requests


def test_a_decision_without_a_condition_answers_and_goes_on(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Generate three startup ideas", reply="ideas A B C")
    stub.add_rule(match="Evaluate the ideas", reply="B")
    out = run_script("decision_without_condition.py", capsys).out
    assert line(out, "RESULT:") == "B" and line(out, "GENERATED:") == "ideas A B C"
    (evaluate,) = [r.prompt for r in stub.requests_matching("Evaluate the ideas")]
    assert "ideas A B C" in evaluate


def test_a_string_in_context_is_input_text(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Analyze the CV", reply="Python, distributed systems")
    stub.add_rule(match="Write the final CV report", reply="REPORT")
    out = run_script("string_context.py", capsys).out
    assert line(out, "RESULT:") == "REPORT"
    (skills,) = [r.prompt for r in stub.requests_matching("Analyze the CV")]
    assert "Candidate: Ada, ten years of Python" in skills


def test_a_misspelt_task_name_in_context_is_still_an_error(praison_env):
    a = Agent(name="A", instructions="x")
    skills = Task(name="skills", description="Analyze skills", agent=a)
    report = Task(name="report", description="Report", agent=a, context=["skils"])
    with pytest.raises(UnknownTaskError, match="did you mean 'skills'"):
        AgentTeam(agents=[a], tasks=[skills, report]).start()
    assert not praison_env.requests


@pytest.mark.parametrize("slow", ["handle_query", "evaluate_satisfaction"])
def test_a_task_two_branches_reach_runs_once(praison_env, capsys, slow):
    stub = praison_env
    stub.add_rule(match="Classify customer query", reply="high")
    # whichever of the two routed tasks finishes last, evaluate runs once
    stub.add_rule(match="Handle customer query", reply="handled",
                  latency=3.0 if slow == "handle_query" else 0.0)
    stub.add_rule(match="Evaluate customer satisfaction", reply="satisfied",
                  latency=3.0 if slow == "evaluate_satisfaction" else 0.0)
    stub.add_rule(match="Optimize response strategy", reply="maintain_approach")
    out = run_script("customer_service.py", capsys).out
    assert eval(line(out, "STATUS:")) == {i: "completed" for i in range(4)}
    assert [stub.count(m) for m in ("Classify customer", "Handle customer",
                                    "Evaluate customer", "Optimize response")] == [1, 1, 1, 1]


def _router(request):
    if "route to the right worker" not in request.prompt:
        return "W2" if "type 2" in request.prompt else "FINAL"
    if not request.tool_results:
        return StubLLMServer.tool_call("get_time_check", {})
    return {"decision": request.tool_results[-1]["content"]}


def test_a_decision_with_tools_on_a_base_url_runs_only_its_route(praison_env, capsys):
    stub = praison_env
    stub.reply = _router
    captured = run_script("decision_tools.py", capsys)
    out = captured.out
    assert line(out, "RESULT:") == "FINAL"
    assert line(out, "ROUTE RAW:") == "2"  # the route, not {"decision": "2"}
    status = eval(line(out, "STATUS:"))
    assert status == {0: "completed", 1: "not started", 2: "completed", 3: "not started",
                      4: "completed"}  # next_tasks did not run beside the route
    routing = [r for r in stub.requests if "route to the right worker" in r.prompt]
    assert routing[0].tools == ["get_time_check"]
    assert json.loads(routing[-1].messages[-1]["content"]) == 2  # the tool's result
    # the tool's prints, in order, on the driver's stdout, before the result
    assert "checking the time\nworker 2 is free\n" in out
    assert out.index("worker 2 is free") < out.index("RESULT:")
    assert "AgentActor pid" not in out + captured.err
    assert "[ray-orch] metrics:" not in captured.err


def _desk(request):
    persona, last = request.messages[0]["content"].split("\n")[0], request.messages[-1]
    if last["role"] == "tool":
        return f"{persona} relayed: {last['content']}"
    if "Billing Specialist" in persona:
        return "Billing: the second charge is refunded"
    if "Triage" in persona:
        return StubLLMServer.tool_call("transfer_to_billing_agent",
                                       {"message": "charged twice"})
    # the refund desk hands off twice in one turn; its max_handoffs is 1
    return StubLLMServer.tool_calls(("transfer_to_billing_agent", {"message": "invoice 1"}),
                                    ("transfer_to_billing_agent", {"message": "invoice 2"}))


def test_handoffs_are_tool_calls_bounded_by_max_handoffs(praison_env, capsys):
    stub = praison_env
    stub.reply = _desk
    out = run_script("handoffs.py", capsys).out
    assert line(out, "BILLING:") == ("You are Customer Service Triage. relayed: Billing: the "
                                     "second charge is refunded")
    triage = next(r for r in stub.requests if "Triage" in r.messages[0]["content"])
    assert triage.tools == ["transfer_to_billing_agent", "transfer_to_refund_agent"]
    refund = [r for r in stub.requests if "Refund Specialist" in r.messages[0]["content"]]
    results = [m["content"] for m in refund[-1].tool_results]
    assert sum("Billing: the second charge" in r for r in results) == 1
    assert sum("max_handoffs=1" in r for r in results) == 1  # the second one was refused


def _desks(request):
    text = request.messages[-1]["content"]
    if text.startswith("Classify:"):
        return {"decision": "billing" if "refund" in text else "tech"}
    return "refunded" if text.startswith("Refund:") else "fixed"


def test_each_item_of_a_loop_routed_on_its_own(stub, ray_session):
    from ray_orch import Process

    stub.reply = _desks
    stub.latency = 1.0
    agent = Agent(role="Support", goal="Help customers", llm=stub.llm)
    tasks = {
        "triage": Task(description="Classify: {item}", agent=agent, task_type="loop",
                       loop_data=["refund please", "the app crashes", "refund my order"],
                       condition={"billing": ["billing_desk"], "tech": ["tech_desk"]}),
        "billing_desk": Task(description="Refund: {item} (routed {route})", agent=agent),
        "tech_desk": Task(description="Fix: {item}", agent=agent),
    }
    outputs = Process(tasks=tasks, agents=[agent]).workflow()
    assert [o.metadata["decision"] for o in outputs["triage"].iterations] == \
        ["billing", "tech", "billing"]
    assert [o.raw for o in outputs["billing_desk"].iterations] == ["refunded", "refunded"]
    assert [o.raw for o in outputs["tech_desk"].iterations] == ["fixed"]
    refunds = sorted(r.messages[-1]["content"].split("\n")[0] for r in stub.requests
                     if r.messages[-1]["content"].startswith("Refund:"))
    assert refunds == ["Refund: refund my order (routed billing)",
                       "Refund: refund please (routed billing)"]
    classify = [r for r in stub.requests if "Classify:" in r.messages[-1]["content"]]
    # the items were classified at once, across the pool
    assert max(r.t_start for r in classify) < min(r.t_end for r in classify)


def test_a_loop_without_input_file_in_a_sequential_team_runs_once(praison_env, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # no tasks.csv here: PraisonAI's sequential process needs none
    stub = praison_env
    a = Agent(name="Batcher", instructions="Process batches")
    batches = Task(name="process_batches", description="Process all data batches",
                   agent=a, task_type="loop",
                   condition={"more_batches": ["process_batches"], "done": ["report"]})
    report = Task(name="report", description="Generate final report", agent=a)
    team = AgentTeam(agents=[a], tasks=[batches, report], process="sequential")
    assert team.start() == "ok"
    assert stub.count("Process all data batches") == 1 and stub.count("final report") == 1
    assert batches.task_type == "loop" and batches.condition  # the user's task, as given
