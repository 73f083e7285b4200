"""Static validation: every bad input is a typed error naming task and field, before any
LLM call (no Ray started, no stub needed)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ray_orch import (
    Agent,
    DuplicateTaskError,
    InvalidTaskFieldError,
    LoopDataError,
    MissingAgentError,
    Process,
    SerializationError,
    Task,
    ToolDefinitionError,
    UnboundedCycleError,
    UnknownTaskError,
    WorkflowDefinitionError,
)

agent = Agent(role="Worker", goal="Work", llm="openai/never-called")


def validate(tasks, mode="workflow", **kw):
    return Process(tasks=tasks, agents=[agent], **kw).validate(mode)


def test_unknown_context_name_names_task_and_field():
    with pytest.raises(UnknownTaskError) as info:
        validate({"a": Task(description="a", agent=agent),
                  "b": Task(description="b", agent=agent, context=["A "])})
    assert info.value.task == "b" and info.value.field == "context"
    assert "unknown task 'A '" in str(info.value)


def test_context_object_that_is_no_task():
    with pytest.raises(InvalidTaskFieldError, match="context entries must be task names"):
        validate({"b": Task(description="b", agent=agent, context=[42])})


def test_context_task_object_outside_the_process():
    stranger = Task(description="elsewhere", agent=agent, name="stranger")
    with pytest.raises(UnknownTaskError, match="not part of this process"):
        validate({"b": Task(description="b", agent=agent, context=[stranger])})


def test_context_as_task_objects_resolves():
    first = Task(description="first", agent=agent)
    g = validate({"first": first, "second": Task(description="s", agent=agent,
                                                 context=[first])})
    assert g.nodes["second"].deps == ["first"]


def test_duplicate_names_in_list_form():
    with pytest.raises(DuplicateTaskError, match="'same'"):
        validate([Task(description="a", agent=agent, name="same"),
                  Task(description="b", agent=agent, name="same")])


def test_task_without_agent_and_no_default(monkeypatch):
    monkeypatch.delenv("RAY_ORCH_MODEL", raising=False)
    monkeypatch.setenv("RAY_ORCH_DISABLE_EMBEDDED", "1")
    with pytest.raises(MissingAgentError) as info:
        validate({"lonely": Task(description="x")}, mode="sequential")
    assert info.value.task == "lonely" and "RAY_ORCH_MODEL" in str(info.value)


def test_task_without_agent_uses_default_model_when_configured(monkeypatch):
    monkeypatch.setenv("RAY_ORCH_MODEL", "openai/whatever")
    validate({"lonely": Task(description="x")}, mode="sequential")


def test_output_json_must_be_a_pydantic_model():
    with pytest.raises(InvalidTaskFieldError) as info:
        validate({"a": Task(description="a", agent=agent, output_json={"type": "object"})})
    assert info.value.field == "output_json"


def test_every_problem_is_listed_at_once(tmp_path):
    with pytest.raises(WorkflowDefinitionError) as info:
        validate({
            "a": Task(description="a", agent=agent, next_tasks=["nope"]),
            "b": Task(description="b", agent=agent, task_type="decision",
                      condition={"x": ["ghost"]}),
            "c": Task(description="go {col}", agent=agent, task_type="loop",
                      loop_data=str(tmp_path / "missing.csv")),
        })
    err = info.value
    assert len(err.problems) == 3
    assert {p.task for p in err.problems} == {"a", "b", "c"}
    assert "3 problems" in str(err)


def test_loop_data_problems(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("chunk_id\n")
    with pytest.raises(LoopDataError, match="no items"):
        validate({"l": Task(description="x {chunk_id}", agent=agent, task_type="loop",
                            loop_data=str(empty))})
    data = tmp_path / "chunks.csv"
    data.write_text("chunk_id\n1\n2\n")
    with pytest.raises(LoopDataError, match=r"\['chunk'\]") as info:
        validate({"l": Task(description="x {chunk}", agent=agent, task_type="loop",
                            loop_data=str(data))})
    assert info.value.field == "description"
    with pytest.raises(LoopDataError, match="not valid json"):
        bad = tmp_path / "bad.json"
        bad.write_text("[1, 2")
        validate({"l": Task(description="x", agent=agent, task_type="loop",
                            loop_data=str(bad))})
    with pytest.raises(LoopDataError, match="max_iterations"):
        validate({"l": Task(description="x", agent=agent, task_type="loop", loop_data=[1, 2, 3],
                            max_iterations=2)})


def test_unbounded_cycles():
    with pytest.raises(UnboundedCycleError, match="no decision"):
        validate({"a": Task(description="a", agent=agent, next_tasks=["b"]),
                  "b": Task(description="b", agent=agent, next_tasks=["a"])})
    with pytest.raises(UnboundedCycleError, match="context dependencies form a cycle"):
        validate({"a": Task(description="a", agent=agent, context=["b"]),
                  "b": Task(description="b", agent=agent, context=["a"])})


def test_routes_back_to_an_earlier_task_are_loops_not_gates():
    graph = validate({
        "draft": Task(description="d", agent=agent),
        "review": Task(description="r", agent=agent, task_type="decision",
                       condition={"revise": ["draft"], "ok": ["publish"]}),
        "publish": Task(description="p", agent=agent),
    })
    assert graph.starts() == ["draft", "review"]
    assert graph.nodes["publish"].controlled and not graph.nodes["draft"].controlled


def test_decision_needs_condition_and_condition_needs_decision():
    with pytest.raises(InvalidTaskFieldError, match="condition"):
        validate({"a": Task(description="a", agent=agent, task_type="decision")})
    with pytest.raises(InvalidTaskFieldError, match="only applies"):
        validate({"a": Task(description="a", agent=agent, condition={"x": []})})


def test_non_serialisable_task_is_reported_before_running(tmp_path):
    class Holder(BaseModel):
        x: int = 0

    handle = open(tmp_path / "f.txt", "w")  # noqa: SIM115
    try:
        bad_agent = Agent(role="Leaky", goal="x", llm="openai/never-called")
        bad_agent.log_file = handle
        process = Process(tasks={"t": Task(description="t", agent=bad_agent)},
                          agents=[bad_agent])
        with pytest.raises(SerializationError) as info:
            process.workflow()
        assert info.value.task == "t" and info.value.field == "agent"
        assert "cannot be sent to the cluster" in str(info.value)
    finally:
        handle.close()


def test_tools_that_cannot_be_offered_are_refused():
    with pytest.raises(ToolDefinitionError, match="not a tool") as info:
        Agent(role="Tooled", goal="x", tools=[42])
    assert info.value.field == "tools"
