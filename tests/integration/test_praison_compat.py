"""PraisonAI scripts run unchanged but for their import line (``tests/compat/``).

Each script in ``tests/compat/`` is written as PraisonAI's examples are, with
``from ray_orch import ...``; it runs in this process (the shared Ray session) with
PraisonAI's model variables pointing at the stub, and the stub's request log shows what
each agent was asked.
"""

from __future__ import annotations

import json
import runpy
import warnings
from pathlib import Path

import pytest
from cli_output import json_report

import ray_orch
from ray_orch import (
    Agent,
    Agents,
    AgentTeam,
    InvalidTaskFieldError,
    PraisonAIAgents,
    PraisonCompatWarning,
    Task,
    TaskOutput,
    WorkflowDefinitionError,
)

COMPAT = Path(__file__).resolve().parent / "compat"


@pytest.fixture
def praison_env(stub, monkeypatch, ray_session):
    """PraisonAI's environment, pointing at the stub."""
    monkeypatch.delenv("RAY_ORCH_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("OPENAI_MODEL_NAME", "stub-model")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")
    return stub


def run_script(name, capsys):
    runpy.run_path(str(COMPAT / name), run_name="__main__")
    return capsys.readouterr().out


def prompts(stub, match):
    return [r.prompt for r in stub.requests_matching(match)]


# -- the compatibility scripts ---------------------------------------------------------------


def test_sequential(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Analyze the latest AI", reply="Five developments: agents, RAG")
    stub.add_rule(match="Write a short blog post", reply="A blog post about agents")
    out = run_script("example_sequential.py", capsys)
    assert "RESULT: A blog post about agents" in out
    (blog,) = prompts(stub, "Write a short blog post")
    assert "Five developments: agents, RAG" in blog  # the writer sees the research
    assert all(r.model == "stub-model" for r in stub.requests)


def test_workflow_with_a_decision_that_loops_back(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="'valid' or 'invalid'", reply=["invalid", "valid"])
    stub.add_rule(match="Summarise the validated data", reply="Summary of the energy data")
    out = run_script("workflow_example_basic.py", capsys)
    assert "RESULT: Summary of the energy data" in out
    assert stub.count("Collect three data points") == 2  # "invalid" routed back once
    assert stub.count("Validate the collected data") == 2


@pytest.mark.parametrize("parity, ran", [("even", 4), ("odd", 1)])
def test_decision_routes_or_exits(praison_env, capsys, parity, ran):
    stub = praison_env
    stub.add_rule(match="Either 'even' or 'odd'", reply=parity)
    out = run_script("prompt_chaining.py", capsys)
    status = eval(out.split("STATUS: ")[1].strip())  # a dict literal the script printed
    assert list(status.values()).count("completed") == ran
    assert list(status.values()).count("not started") == 4 - ran


def test_parallel_async_tasks_feed_the_aggregator(praison_env, capsys):
    stub = praison_env
    stub.latency = 4.0  # longer than the three pools take to start on a loaded machine
    stub.add_rule(match="Research market trends", reply="MARKET-NOTES")
    stub.add_rule(match="Analyse competitors", reply="COMPETITOR-NOTES")
    stub.add_rule(match="Research what electric car customers need", reply="CUSTOMER-NOTES")
    stub.add_rule(match="Combine the research", reply="Combined report")
    out = run_script("parallelisation.py", capsys)
    assert "RESULT: Combined report" in out
    (combine,) = prompts(stub, "Combine the research")
    assert all(n in combine for n in ("MARKET-NOTES", "COMPETITOR-NOTES", "CUSTOMER-NOTES"))
    firsts = [r for r in stub.requests if "Combine" not in r.prompt]
    # The three ran at once: each started before any of them finished.
    assert max(r.t_start for r in firsts) < min(r.t_end for r in firsts)


def test_async_tasks_structured_output_and_async_callbacks(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Search for information about",
                  reply={"query": "q", "results": ["a", "b"], "total_results": 2})
    out = run_script("async_example.py", capsys)
    assert "Task 0: completed SearchResult" in out and "Task 1: completed SearchResult" in out
    assert "Task 2: completed NoneType" in out
    assert "CALLBACKS: ['Pydantic', 'Pydantic']" in out


def test_structured_outputs(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="pasta recipe",
                  reply={"name": "Carbonara", "ingredients": ["pasta"], "minutes": 15})
    stub.add_rule(match="Review the recipe", reply={"verdict": "tasty", "score": 9})
    out = run_script("structured_output.py", capsys)
    assert "RECIPE: Carbonara 15 Pydantic" in out
    # output_json: PraisonAI's JSON output (json_dict, no pydantic); str() is the JSON
    assert "REVIEW: tasty 9 JSON" in out
    assert 'STR: {   "verdict": "tasty",   "score": 9 }' in out


def test_callbacks_and_output_file(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Analyse the quarterly sales", reply="Sales rose 5%")
    stub.add_rule(match="Write the sales report", reply="REPORT: sales rose")
    out = run_script("callbacks.py", capsys)
    # output.agent is the agent's name (role: "Sales Analyst"), as PraisonAI's
    assert "Callback: agent=Analyst description='Analyse the quarterl' raw=Sales rose 5%" in out
    assert "CALLED: 2" in out
    assert "FILE: REPORT: sales rose" in out  # create_directory made reports/


def test_hierarchical(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Write an article about Ray", reply="An article on Ray")
    out = run_script("hierarchical.py", capsys)
    assert "STATUS: {0: 'completed', 1: 'completed'}" in out
    assert "RESULT: An article on Ray" in out


def test_loop_over_an_input_file(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Check this question and answer", reply="correct")
    stub.add_rule(match="Summarise all checks", reply="All three correct")
    out = run_script("loop_tasks.py", capsys)
    assert "RESULT: All three correct" in out
    checks = prompts(stub, "Check this question and answer")
    assert len(checks) == 3
    assert any("Question: What is the capital of France?\nAnswer: Paris" in p for p in checks)


def test_agents_only_team_with_reflection(praison_env, capsys):
    stub = praison_env
    stub.add_rule(match="Suggest a name for a coffee shop", reply="Bean There")
    def reflecting(request):  # the reflection call (the improve call carries it in history)
        return request.messages[-1]["content"].startswith("Reflect on your answer")

    stub.add_rule(match=reflecting, reply=[{"reflection": "weak", "satisfactory": "no"},
                                                 {"reflection": "good", "satisfactory": "yes"}])
    stub.add_rule(match="Write a slogan", reply="Been there, bean that")
    stub.add_rule(match=lambda r: r.messages[-1]["content"].startswith("Now give your improved"),
                  reply="The slogan fits, improved")
    out = run_script("agents_only.py", capsys)
    (slogan,) = prompts(stub, "Write a slogan")
    assert "Bean There" in slogan  # each agent sees the previous answer
    checker = prompts(stub, "Check the slogan fits the name")
    # answer, reflect ("no"), improve, reflect ("yes"): reflection ran twice
    assert len(checker) == 4
    assert out.strip().endswith("RESULT: The slogan fits, improved")


@pytest.mark.skipif(not hasattr(ray_orch, "tool"),
                    reason="tools= lands with issue #15 (ray_orch.tool); enable after merging")
def test_tools(praison_env, capsys):
    stub = praison_env
    out = run_script("tools_example.py", capsys)
    assert "RESULT:" in out
    offered = [t["function"]["name"] for r in stub.requests for t in r.body.get("tools") or []]
    assert "get_weather" in offered  # the plain function was offered to the model as a tool


def test_agents_yaml_with_the_cli(praison_env):
    from typer.testing import CliRunner

    from ray_orch.cli import app

    stub = praison_env
    stub.add_rule(match="Research the latest developments in renewable energy",
                  reply="Solar is cheaper")
    stub.add_rule(match="Write a short article on renewable energy", reply="ARTICLE")
    result = CliRunner().invoke(app, ["run", str(COMPAT / "agents.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json_report(result.stdout)
    assert report["runs"][0]["mode"] == "sequential"
    (article,) = prompts(stub, "Write a short article")
    assert "Solar is cheaper" in article


# -- teams -----------------------------------------------------------------------------------


def test_aliases_and_return_shapes(praison_env):
    assert Agents is AgentTeam and PraisonAIAgents is AgentTeam
    stub = praison_env
    stub.add_rule(match="first", reply="one")
    stub.add_rule(match="second", reply="two")
    a = Agent(name="A", instructions="x")
    team = Agents(agents=[a], tasks=[Task(description="first", agent=a),
                                     Task(description="second", agent=a)])
    assert team.start() == "two"
    full = team.start(return_dict=True)
    assert full["task_status"] == {0: "completed", 1: "completed"}
    assert [o.raw for o in full["task_results"].values()] == ["one", "two"]
    assert isinstance(full["task_results"][0], TaskOutput)
    assert team.get_task_status(1) == "completed"


def test_state_is_shared_with_callbacks_workers_and_checkpoints(praison_env, tmp_path):
    import ray

    a = Agent(name="A", instructions="x")
    team = AgentTeam(agents=[a], checkpoint_dir=tmp_path)
    team.set_state("runs", 10)
    team.tasks[0].callback = lambda output: team.increment_state("runs")
    team.start()
    assert team.get_state("runs") == 11  # the callback wrote it, on the driver

    @ray.remote
    def from_a_worker(t):
        t.append_to_state("seen", "worker")
        return t.get_state("runs")

    assert ray.get(from_a_worker.remote(team)) == 11  # the same actor, from a worker
    assert team.get_state("seen") == ["worker"]
    saved = json.loads((tmp_path / "team_state.json").read_text())
    assert saved["runs"] == 11


def test_state_before_any_run_needs_no_ray():
    team = AgentTeam(agents=[Agent(name="A", instructions="x")])
    team.update_state({"a": 1})
    assert team.get_all_state() == {"a": 1} and team.has_state("a")
    assert team.delete_state("a") and not team.has_state("a")
    assert team.get_state("missing", "default") == "default"


def test_team_definition_errors():
    a = Agent(name="A", instructions="x")
    with pytest.raises(InvalidTaskFieldError, match="process"):
        AgentTeam(agents=[a], process="parallel")
    with pytest.raises(InvalidTaskFieldError, match="tasks"):
        AgentTeam(agents=[a], tasks="do it")
    with pytest.raises(InvalidTaskFieldError, match="unexpected keyword argument 'colour'"):
        AgentTeam(agents=[a], colour="red")
    team = AgentTeam(agents=[a], process="workflow", tasks=[
        Task(description="a", agent=a, is_start=True, next_tasks=["b"]),
        Task(name="b", description="b", agent=a, is_start=True)])
    with pytest.raises(InvalidTaskFieldError, match="is_start"):
        team._prepare()


def test_is_start_runs_first_and_exit_routes_end(praison_env):
    stub = praison_env
    stub.add_rule(match="Decide", reply="done")
    a = Agent(name="A", instructions="x")
    tasks = [Task(name="later", description="Later step", agent=a),
             Task(name="decide", description="Decide", agent=a, is_start=True,
                  task_type="decision", condition={"more": ["later"], "done": "exit"})]
    result = AgentTeam(agents=[a], tasks=tasks, process="workflow").start(return_dict=True)
    assert result["task_status"] == {0: "not started", 1: "completed"}
    assert stub.count("Later step") == 0
    assert [t.status for t in tasks] == ["not started", "completed"]  # PraisonAI's, on the tasks


def test_team_model_and_variables(praison_env):
    stub = praison_env
    a = Agent(name="A", instructions="x")
    team = AgentTeam(agents=[a], tasks=[Task(description="About {city}", agent=a)],
                     variables={"city": "Lyon"}, model="other-model")
    team.start()
    (request,) = stub.requests
    assert request.model == "other-model" and "About Lyon" in request.prompt


# -- keywords, outputs, models ---------------------------------------------------------------


def test_praison_keywords_warn_once_or_error():
    with pytest.warns(PraisonCompatWarning, match=r"Task\(rerun=\.\.\.\)"):
        Task(description="x", rerun=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Task(description="x", rerun=True)  # once only
        Task(description="x", human_input=True)  # honoured here (approvals)
        Task(description="x", rerun=False, quality_check=True)  # PraisonAI's defaults
    with pytest.warns(PraisonCompatWarning, match=r"Agent\(toolsets=\.\.\.\)"):
        Agent(name="A", toolsets=["web"])
    with pytest.raises(InvalidTaskFieldError, match="handoffs must be Agents"):
        Agent(name="A", handoffs=[object()])  # honoured now: a target must be an Agent
    with pytest.warns(PraisonCompatWarning, match=r"AgentTeam\(planning=\.\.\.\)"):
        AgentTeam(agents=[Agent(name="A")], planning=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # honoured now (ray_orch.Memory)
        AgentTeam(agents=[Agent(name="A", memory=True)], memory=True, user_id="u",
                  memory_config={"provider": "rag"})
    with pytest.raises(InvalidTaskFieldError, match="'descripton'"):
        Task(descripton="typo")
    with pytest.raises(InvalidTaskFieldError, match="not both"):
        Task(description="x", callback=print, on_task_complete=print)
    with pytest.raises(InvalidTaskFieldError, match="not both"):
        Agent(name="A", llm="a", model="b")


def test_agent_and_task_keywords_are_kept():
    agent = Agent(name="Researcher", instructions="Dig", model="gpt-4o-mini", reflection=True)
    assert (agent.role, agent.name, agent.llm, agent.reflection_rounds) == \
        ("Researcher", "Researcher", "gpt-4o-mini", (1, 3))
    upstream = Task(description="u")
    task = Task(description="x", name="n", is_start=True, depends_on=[upstream],
                output_file="out.md", create_directory=True)
    assert task.is_start and task.context == [upstream] and task.create_directory
    with pytest.raises(InvalidTaskFieldError, match="min_iterations"):
        Agent(name="A", reflection={"min_iterations": 3, "max_iterations": 1})


def test_task_output_reads_like_praisonai():
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int

    raw = TaskOutput(raw="line one\nline two", description="d", agent="A")
    assert str(raw) == "line one\nline two" and raw.output_format == "RAW"
    assert raw.summary == "d"  # PraisonAI's: the description's first 10 characters
    assert TaskOutput(raw="a long answer").summary == "a long ans"
    as_json = TaskOutput(raw="{}", json_dict={"x": 1})
    assert str(as_json) == '{\n  "x": 1\n}' and as_json.output_format == "JSON"
    typed = TaskOutput(raw="{}", pydantic=Point(x=1), json_dict={"x": 1})
    assert str(typed) == "x=1" and typed.output_format == "Pydantic"
    assert typed.to_dict() == {"x": 1}


def test_models_from_praisonai_environment(monkeypatch):
    from ray_orch.model.resolve import default_llm, resolve_llm

    for name in ("RAY_ORCH_MODEL", "OPENAI_MODEL_NAME", "OPENAI_API_BASE", "OPENAI_BASE_URL",
                 "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_MODEL_NAME", "llama3")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:8/v1")  # PraisonAI prefers it
    monkeypatch.setenv("OPENAI_API_KEY", "sk-p")
    config = default_llm()
    assert (config.model, config.base_url, config.api_key) == \
        ("openai/llama3", "http://127.0.0.1:8/v1", "sk-p")
    named = resolve_llm("gpt-4o-mini")  # a named model goes to PraisonAI's server too
    assert (named.model, named.base_url) == ("openai/gpt-4o-mini", "http://127.0.0.1:8/v1")
    assert resolve_llm("anthropic/claude-3").base_url is None
    as_dict = resolve_llm({"model": "gpt-4o-mini", "temperature": 0.1})
    assert (as_dict.model, as_dict.base_url, as_dict.options) == \
        ("openai/gpt-4o-mini", "http://127.0.0.1:8/v1", {"temperature": 0.1})
    monkeypatch.setenv("RAY_ORCH_MODEL", "openai/mine")
    assert default_llm().model == "openai/mine"  # RAY_ORCH_MODEL still wins
    for name in ("RAY_ORCH_MODEL", "OPENAI_MODEL_NAME", "OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name)
    assert default_llm().model == "gpt-4o-mini"  # PraisonAI's default with only a key


def test_praison_yaml_errors_carry_file_and_line(tmp_path):
    from ray_orch.api.yaml_workflow import load_workflow

    path = tmp_path / "agents.yaml"
    path.write_text("framework: praisonai\ntopic: tea\nroles:\n  brewer:\n    role: Brewer\n"
                    "    goal: Brew {topic}\n    tasks:\n      brew:\n"
                    "        description: Brew {topic}\n        expected_ouput: hot\n")
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflow(path)
    assert f"{path}:10:" in str(info.value) and "expected_ouput" in str(info.value)
    path.write_text(path.read_text().replace("expected_ouput", "expected_output"))
    process, mode = load_workflow(path)
    assert mode == "sequential" and process.tasks["brew"].description == "Brew tea"
    assert process.tasks["brew"].agent.goal == "Brew tea"


def test_callback_errors_are_kept_or_fail_the_run(praison_env, caplog):
    from ray_orch import TaskFailedError

    def broken(output):
        raise ValueError("bad callback")

    a = Agent(name="A", instructions="x")
    team = AgentTeam(agents=[a], tasks=[Task(description="t", agent=a, callback=broken)])
    assert team.start() == "ok"  # PraisonAI logs a callback's error and goes on
    assert team.tasks[0].result.callback_error == "ValueError: bad callback"
    assert "bad callback" in caplog.text
    strict = AgentTeam(agents=[a], tasks=[Task(description="t", agent=a, callback=broken,
                                               fail_on_callback_error=True)])
    with pytest.raises(TaskFailedError, match="callback raised ValueError"):
        strict.start()


def test_state_comes_back_on_resume(praison_env, tmp_path):
    a = Agent(name="A", instructions="x")
    first = AgentTeam(agents=[a], checkpoint_dir=tmp_path)
    first.tasks[0].callback = lambda output: first.set_state("answer", output.raw)
    first.start()
    again = AgentTeam(agents=[Agent(name="A", instructions="x")], checkpoint_dir=tmp_path)
    assert again.get_state("answer") is None
    again.start(resume=True)
    assert again.get_state("answer") == "ok"


def test_single_agent_start(praison_env):
    praison_env.add_rule(match="Why is the sky blue?", reply="Rayleigh scattering")
    assert Agent(instructions="Answer briefly").start("Why is the sky blue?") == \
        "Rayleigh scattering"


def test_a_decision_matching_no_route_ends_the_workflow(praison_env, caplog):
    stub = praison_env
    stub.add_rule(match="Decide", reply="maybe")
    a = Agent(name="A", instructions="x")
    tasks = [Task(name="decide", description="Decide", agent=a, task_type="decision",
                  condition={"yes": ["act"], "no": "exit"}),
             Task(name="act", description="Act now", agent=a)]
    result = AgentTeam(agents=[a], tasks=tasks, process="workflow").start(return_dict=True)
    assert result["task_status"] == {0: "completed", 1: "not started"}
    assert "matched none of its routes" in caplog.text
    assert stub.count("Act now") == 0


def test_callbacks_and_output_files_under_a_plain_process(praison_env, tmp_path):
    from ray_orch import Process

    praison_env.add_rule(match="Loop over", reply="one")
    seen = []
    agent = Agent(name="A", instructions="x")
    tasks = {"each": Task(description="Loop over {item}", agent=agent, task_type="loop",
                          loop_data=["a", "b"], callback=seen.append,
                          output_file=str(tmp_path / "loop.txt"))}
    results = Process(tasks=tasks, agents=[agent]).sequential()
    assert [o.raw for o in seen] == [results["each"].raw]  # once, for the whole loop
    assert len(seen[0].iterations) == 2
    assert (tmp_path / "loop.txt").read_text() == results["each"].raw


def test_start_content_reaches_every_task_once(praison_env):
    stub = praison_env
    a = Agent(name="A", instructions="x")
    tasks = [Task(description="Step one", agent=a), Task(description="Step two", agent=a)]
    AgentTeam(agents=[a], tasks=tasks).start("Budget is 100 EUR")
    assert all("Budget is 100 EUR" in r.prompt for r in stub.requests)
    assert [t.description for t in tasks] == ["Step one", "Step two"]  # restored


def test_a_loop_without_its_input_file_is_a_typed_error(praison_env, tmp_path, monkeypatch):
    from ray_orch import LoopDataError

    monkeypatch.chdir(tmp_path)  # PraisonAI's default input_file is tasks.csv, here absent
    a = Agent(name="A", instructions="x")
    team = AgentTeam(agents=[a], tasks=[Task(name="rows", description="Each row", agent=a,
                                             task_type="loop")], process="workflow")
    with pytest.raises(LoopDataError, match=r"task 'rows': cannot read input_file 'tasks\.csv'"):
        team.start()
    assert praison_env.count() == 0
