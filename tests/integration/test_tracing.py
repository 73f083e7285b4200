"""OpenTelemetry traces to a real OTLP/HTTP receiver: one trace per run, GenAI span
names and attributes, parents linked across the driver, the Supervisor and the members."""

from __future__ import annotations

import os

import pytest
from otlp_receiver import OTLPReceiver

from ray_orch import Agent, Process, Task, TaskFailedError

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture
def receiver(monkeypatch):
    with OTLPReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "ray-orch-tests")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield rx


def by_name(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


def test_a_run_is_one_trace_linked_across_processes(stub, receiver):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    editor = Agent(role="Editor", goal="Edit", llm=stub.llm)
    process = Process(tasks={"draft": Task(description="Draft", agent=writer),
                             "edit": Task(description="Edit", agent=editor,
                                          context=["draft"])}, name="article")
    process.workflow()
    spans = receiver.wait_for(lambda s: len(by_name(s, "invoke_agent")) >= 2 and
                              len(by_name(s, "chat")) >= 2 and by_name(s, "invoke_workflow"))
    [workflow] = by_name(spans, "invoke_workflow")
    assert workflow.name == "invoke_workflow article"
    assert workflow.parent_id == ""
    assert workflow.resource["service.name"] == "ray-orch-tests"
    assert workflow.resource["process.pid"] == os.getpid()
    agents = {s.attributes["gen_ai.agent.name"]: s for s in by_name(spans, "invoke_agent")}
    assert set(agents) == {"Writer", "Editor"}
    for role, span in agents.items():
        assert span.name == f"invoke_agent {role}"
        assert span.trace_id == workflow.trace_id
        assert span.parent_id == workflow.span_id  # across processes: driver -> member
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert span.resource["process.pid"] != os.getpid()  # recorded in the member
    chats = by_name(spans, "chat")
    assert {c.parent_id for c in chats} == {s.span_id for s in agents.values()}
    for chat in chats:
        assert chat.name == f"chat {stub.llm['model']}"
        assert chat.attributes["gen_ai.request.model"] == stub.llm["model"]
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert "gen_ai.input.messages" not in chat.attributes  # content only when opted in


def test_a_failed_call_carries_its_error_type(stub, receiver):
    stub.add_rule(match="Break", fault="500", times=100)
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    process = Process(tasks={"bad": Task(description="Break", agent=agent, max_retries=0)})
    with pytest.raises(TaskFailedError):
        process.workflow()
    spans = receiver.wait_for(lambda s: by_name(s, "chat") and by_name(s, "invoke_agent"))
    [chat] = by_name(spans, "chat")
    assert chat.attributes["error.type"] == "LLMError"
    assert chat.status_code == 2  # ERROR
    [attempt] = by_name(spans, "invoke_agent")
    assert attempt.attributes["error.type"] == "LLMError"


def test_prompts_are_recorded_only_when_opted_in(stub, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    stub.reply = "a secret answer"
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    Process(tasks={"a": Task(description="Tell me", agent=agent)}).workflow()
    [chat] = receiver.wait_for(lambda s: by_name(s, "chat")) and by_name(receiver.spans, "chat")
    assert "a secret answer" in chat.attributes["gen_ai.output.messages"]
    assert "Tell me" in chat.attributes["gen_ai.input.messages"]


def test_no_endpoint_no_tracing(stub):
    from ray_orch.core import trace

    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    Process(tasks={"a": Task(description="A", agent=agent)}).workflow()
    assert not trace.enabled()


def lookup_order(customer: str) -> str:
    """Find a customer's last order."""
    return f"{customer}: order A-1001"


def test_tool_calls_are_execute_tool_spans_under_their_attempt(stub, receiver):
    from ray_orch.testing import StubLLMServer

    stub.reply = [StubLLMServer.tool_call("lookup_order", {"customer": "alice"}),
                  "Your order is A-1001"]
    agent = Agent(role="Support", goal="Help", llm=stub.llm, tools=[lookup_order])
    Process(tasks={"a": Task(description="Where is my order?", agent=agent)}).workflow()
    spans = receiver.wait_for(lambda s: by_name(s, "execute_tool") and
                              len(by_name(s, "chat")) >= 2)
    [attempt] = by_name(spans, "invoke_agent")
    [tool] = by_name(spans, "execute_tool")
    assert tool.name == "execute_tool lookup_order"
    assert tool.attributes["gen_ai.tool.name"] == "lookup_order"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.parent_id == attempt.span_id and tool.trace_id == attempt.trace_id
