"""YAML workflows: loaded into the same Agent/Task/Process objects as the Python API,
and every mistake reported as a typed error with its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ray_orch import (
    Agent,
    DuplicateTaskError,
    InvalidTaskFieldError,
    Process,
    Task,
    UnboundedCycleError,
    UnknownTaskError,
    WorkflowDefinitionError,
)
from ray_orch.api.yaml_workflow import load_workflow, loads_workflow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "customer_service.yaml"

GOOD = """\
name: customer-service
process: workflow
agents:
  support: {role: Support, goal: Handle inquiries}
  tech:
    role: Technical
    goal: Solve technical issues
    backstory: "Ten years on the help desk: patient, precise."
    llm: {model: openai/stub, base_url: "${STUB_BASE}", api_key: "${STUB_KEY:-sk-none}"}
tasks:
  categorize:
    description: Categorize customer inquiry
    agent: support
    task_type: decision
    condition: {technical: [tech_support], simple: quick_response}
  tech_support:
    description: Resolve technical issue
    agent: tech
    next_tasks: [send_confirmation]
    max_retries: 1
  quick_response:
    description: Send automated response
    agent: support
    next_tasks: send_confirmation
  send_confirmation:
    description: Send resolution confirmation
    agent: support
    context: [categorize]
"""


def write(tmp_path, text, name="flow.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text, needle):
    """1-based line of the first line containing needle."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_valid_file_loads_into_the_same_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("STUB_KEY", raising=False)
    process, mode = load_workflow(write(tmp_path, GOOD))

    support = Agent(role="Support", goal="Handle inquiries")
    tech = Agent(role="Technical", goal="Solve technical issues",
                 backstory="Ten years on the help desk: patient, precise.",
                 llm={"model": "openai/stub", "base_url": "http://127.0.0.1:9/v1",
                      "api_key": "sk-none"})
    tasks = {
        "categorize": Task(description="Categorize customer inquiry", agent=support,
                           task_type="decision",
                           condition={"technical": ["tech_support"],
                                      "simple": ["quick_response"]}),
        "tech_support": Task(description="Resolve technical issue", agent=tech,
                             next_tasks=["send_confirmation"], max_retries=1),
        "quick_response": Task(description="Send automated response", agent=support,
                               next_tasks=["send_confirmation"]),
        "send_confirmation": Task(description="Send resolution confirmation",
                                  agent=support, context=["categorize"]),
    }
    expected = Process(tasks=tasks, agents=[support, tech], name="customer-service")

    assert mode == "workflow"
    assert isinstance(process, Process) and process.name == "customer-service"
    assert process.validate(mode).definition() == expected.validate(mode).definition()
    assert [type(a) for a in process.agents] == [Agent, Agent]
    loaded_tech = process.tasks["tech_support"].agent
    assert loaded_tech is process.agents[1]
    assert loaded_tech.llm == tech.llm  # ${STUB_BASE} and ${STUB_KEY:-sk-none} expanded
    assert process.tasks["tech_support"].max_retries == 1
    assert process.tasks["categorize"].condition == {"technical": ["tech_support"],
                                                     "simple": ["quick_response"]}


def test_the_example_file_loads():
    process, mode = load_workflow(EXAMPLE)
    assert mode == "workflow" and len(process.tasks) == 6
    assert process.tasks["categorize"].task_type == "decision"
    assert all(a.llm is None for a in process.agents)  # RAY_ORCH_MODEL or the embedded model


def test_mode_override_and_yes_no_decision_keys():
    process, mode = loads_workflow(textwrap.dedent("""
        process: sequential
        tasks:
          ask: {description: Urgent or not, task_type: decision, condition: {yes: [a], no: [b]}}
          a: {description: Urgent}
          b: {description: Not urgent}
        """), mode="workflow")
    assert mode == "workflow"
    assert list(process.tasks["ask"].condition) == ["yes", "no"]  # not True / False


def test_relative_loop_data_is_relative_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chunks.csv").write_text("id,text\n1,a\n2,b\n", encoding="utf-8")
    path = write(tmp_path, """\
        tasks:
          per_chunk:
            description: Summarise chunk {id}
            task_type: loop
            loop_data: data/chunks.csv
        """)
    process, mode = load_workflow(path)
    assert process.tasks["per_chunk"].loop_data == str(tmp_path / "data" / "chunks.csv")
    assert len(process.validate(mode).nodes["per_chunk"].loop_items) == 2


BASE = """\
process: workflow
agents:
  support: {role: Support, goal: Handle inquiries}
  tech: {role: Technical, goal: Fix things}
tasks:
  categorize:
    description: Categorize customer inquiry
    agent: support
    task_type: decision
    condition: {technical: [tech_support]}
  tech_support:
    description: Resolve technical issue
    agent: tech
    max_retries: 2
    context: [categorize]
"""


@pytest.mark.parametrize(("old", "new", "error", "field", "needle", "message"), [
    ("max_retries: 2", "max_retries: three", InvalidTaskFieldError, "max_retries",
     "max_retries", "tasks.tech_support.max_retries: input should be a valid integer"),
    ("agent: support", "agent: suport", InvalidTaskFieldError, "agent", "agent: suport",
     "tasks.categorize.agent: unknown agent 'suport' (did you mean 'support'?) "
     "(agents: support, tech)"),
    ("context: [categorize]", "contxt: [categorize]", InvalidTaskFieldError, "contxt",
     "contxt", "tasks.tech_support.contxt: unknown key 'contxt' (did you mean 'context'?)"),
    ("context: [categorize]", "context: [categorise]", UnknownTaskError, "context",
     "context:", "tasks.tech_support.context[0]: unknown task 'categorise' "
     "(did you mean 'categorize'?)"),
    ("process: workflow", "process: paralel", WorkflowDefinitionError, "process",
     "process:", "process: input should be 'sequential', 'workflow' or 'hierarchical' "
     "(got 'paralel')"),
    ("description: Resolve technical issue", "description: [not, a, string]",
     InvalidTaskFieldError, "description", "not, a, string",
     "tasks.tech_support.description: input should be a valid string"),
    ("condition: {technical: [tech_support]}", "condition: {technical: [tech_suport]}",
     UnknownTaskError, "condition", "tech_suport",
     "tasks.categorize.condition.technical[0]: unknown task 'tech_suport'"),
])
def test_each_error_is_typed_and_line_precise(tmp_path, old, new, error, field, needle,
                                              message):
    text = BASE.replace(old, new)
    assert text != BASE
    path = write(tmp_path, text)
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflow(path)
    err = info.value
    assert type(err) is error
    assert err.field == field
    assert str(err).startswith(f"{path}:{line_of(text, needle)}: {message}"), str(err)


def test_duplicate_task_names_are_not_silently_merged(tmp_path):
    text = BASE + "  categorize:\n    description: again\n"
    with pytest.raises(DuplicateTaskError, match=r"flow.yaml:16: tasks.categorize: two tasks"):
        load_workflow(write(tmp_path, text))


def test_graph_problems_point_at_their_line(tmp_path):
    text = BASE.replace("  tech_support:\n", "  tech_support:\n    next_tasks: [loop_back]\n") \
        + "  loop_back:\n    description: Back again\n    agent: tech\n" \
          "    next_tasks: [tech_support]\n"
    path = write(tmp_path, text)
    with pytest.raises(UnboundedCycleError) as info:
        load_workflow(path)
    line = str(info.value).split(":")[1]
    assert int(line) in (line_of(text, "next_tasks: [loop_back]"),
                         line_of(text, "next_tasks: [tech_support]"))
    assert "cycle" in str(info.value)


def test_every_problem_is_listed_in_line_order(tmp_path):
    text = BASE.replace("process: workflow", "process: paralel") \
        .replace("agent: tech", "agent: tek").replace("max_retries: 2", "max_retries: -1")
    path = write(tmp_path, text)
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflow(path)
    problems = info.value.problems
    assert [type(p) for p in problems] == [WorkflowDefinitionError, InvalidTaskFieldError,
                                           InvalidTaskFieldError]
    lines = [int(str(p).split(":")[1]) for p in problems]
    assert lines == [1, line_of(text, "agent: tek"), line_of(text, "max_retries")]
    assert "3 problems" in str(info.value)
    assert "greater than or equal to 0" in str(problems[2])


def test_unset_environment_variable_is_reported_with_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_BASE", raising=False)
    text = BASE.replace("goal: Fix things}",
                        "goal: Fix things, llm: {model: openai/x, base_url: '${NO_SUCH_BASE}'}}")
    with pytest.raises(WorkflowDefinitionError,
                       match=r"flow.yaml:4: agents.tech.llm.base_url: environment variable "
                             r"NO_SUCH_BASE is not set"):
        load_workflow(write(tmp_path, text))


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: {a: {description: x", "flow.yaml:1: invalid YAML"),
    ("- just\n- a list\n", "flow.yaml:1: (top level): a workflow is a mapping"),
    ("agents: {}\n", "flow.yaml:1: tasks: required key is missing"),
    ("tasks:\n  a:\n    description: x\n    agent: {role: inline}\n",
     "flow.yaml:4: tasks.a.agent: input should be a valid string"),
])
def test_malformed_files(tmp_path, text, message):
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflow(write(tmp_path, text))
    assert message in str(info.value)
