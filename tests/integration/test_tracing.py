"""OpenTelemetry traces to a real OTLP/HTTP receiver: one trace per run, GenAI span
names and attributes, parents linked across the driver, the Supervisor and the members."""

from __future__ import annotations

import os

import pytest
from otlp_receiver import OTLPReceiver

from ray_orch import Agent, Process, Task, TaskFailedError, tool

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


# -- the GenAI semantic conventions ------------------------------------------------------

CLIENT, INTERNAL = 3, 1


def test_chat_spans_follow_the_genai_conventions(stub, receiver):
    agent = Agent(role="Writer", goal="Write", llm={**stub.llm, "temperature": 0.2})
    Process(tasks={"a": Task(description="Write", agent=agent)}, name="conv").workflow()
    spans = receiver.wait_for(lambda s: by_name(s, "chat") and by_name(s, "invoke_workflow"))
    [chat] = by_name(spans, "chat")
    assert chat.kind == CLIENT
    attrs = chat.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == stub.llm["model"]
    assert attrs["gen_ai.response.model"] == stub.requests[0].model  # as the server said
    assert attrs["gen_ai.response.id"] == "chatcmpl-stub-0"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["openinference.span.kind"] == "LLM"
    [workflow] = by_name(spans, "invoke_workflow")
    assert workflow.attributes["openinference.span.kind"] == "CHAIN"
    assert workflow.kind == INTERNAL
    [agent_span] = by_name(spans, "invoke_agent")
    assert agent_span.attributes["openinference.span.kind"] == "AGENT"


def failing_lookup(customer: str) -> str:
    """Find a customer's last order."""
    raise KeyError(f"no customer {customer}")


def test_messages_are_role_and_parts_with_tool_calls_and_results(stub, receiver, monkeypatch):
    import json

    from ray_orch.testing import StubLLMServer

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    stub.reply = [StubLLMServer.tool_call("lookup_order", {"customer": "alice"}, id="call_7"),
                  StubLLMServer.tool_call("failing_lookup", {"customer": "zed"}, id="call_8"),
                  "Your order is A-1001"]
    agent = Agent(role="Support", goal="Help", backstory="You help.", llm=stub.llm,
                  tools=[lookup_order, failing_lookup])
    Process(tasks={"a": Task(description="Where is my order?", agent=agent)}).workflow()
    spans = receiver.wait_for(lambda s: len(by_name(s, "execute_tool")) == 2 and
                              len(by_name(s, "chat")) == 3)
    chats = sorted(by_name(spans, "chat"), key=lambda s: s.start)
    first_out = json.loads(chats[0].attributes["gen_ai.output.messages"])
    assert first_out == [{"role": "assistant", "finish_reason": "tool_calls", "parts": [
        {"type": "tool_call", "id": "call_7", "name": "lookup_order",
         "arguments": {"customer": "alice"}}]}]
    third_in = json.loads(chats[2].attributes["gen_ai.input.messages"])
    assert third_in[0] == {"role": "user", "parts": [
        {"type": "text", "content": third_in[0]["parts"][0]["content"]}]}
    assert "Where is my order?" in third_in[0]["parts"][0]["content"]
    responses = [p for m in third_in if m["role"] == "tool" for p in m["parts"]]
    assert responses[0] == {"type": "tool_call_response", "id": "call_7",
                            "response": "alice: order A-1001"}
    assert "You help." in chats[0].attributes["gen_ai.system_instructions"]
    last_out = json.loads(chats[2].attributes["gen_ai.output.messages"])
    assert last_out[0]["parts"] == [{"type": "text", "content": "Your order is A-1001"}]
    tools = {s.attributes["gen_ai.tool.name"]: s for s in by_name(spans, "execute_tool")}
    ok = tools["lookup_order"].attributes
    assert json.loads(ok["gen_ai.tool.call.arguments"]) == {"customer": "alice"}
    assert ok["gen_ai.tool.call.result"] == "alice: order A-1001"
    assert ok["gen_ai.tool.type"] == "function" and ok["gen_ai.tool.call.id"] == "call_7"
    failed = tools["failing_lookup"]
    assert failed.attributes["error.type"] == "KeyError" and failed.status_code == 2


def traced_lookup(customer: str) -> str:
    """Find a customer's last order (in a span of its own)."""
    from opentelemetry import trace as otel_trace

    with otel_trace.get_tracer("user-code").start_as_current_span("lookup in the database"):
        return f"{customer}: order A-1001"


@tool(remote=True)
def remote_lookup(customer: str) -> str:
    """Find a customer's last order, as a Ray task (in a span of its own)."""
    return traced_lookup(customer)


async def traced_async_lookup(customer: str) -> str:
    """Find a customer's last order, asynchronously (in a span of its own)."""
    return traced_lookup(customer)


def test_user_spans_in_local_and_remote_tools_are_children_of_execute_tool(stub, receiver):
    stub.reply = [{"tool_calls": [
        {"name": "traced_lookup", "arguments": {"customer": "a"}},
        {"name": "traced_async_lookup", "arguments": {"customer": "b"}},
        {"name": "remote_lookup", "arguments": {"customer": "c"}}]}, "done"]
    agent = Agent(role="Support", goal="Help", llm=stub.llm,
                  tools=[traced_lookup, traced_async_lookup, remote_lookup])
    Process(tasks={"a": Task(description="Look up", agent=agent)}).workflow()
    spans = receiver.wait_for(lambda s: len(by_name(s, "lookup in the database")) == 3 and
                              len(by_name(s, "execute_tool")) == 3 and
                              by_name(s, "invoke_workflow"))
    [workflow] = by_name(spans, "invoke_workflow")
    tools = {s.span_id: s for s in by_name(spans, "execute_tool")}
    for user in by_name(spans, "lookup in the database"):
        assert user.parent_id in tools, user  # under its execute_tool span
        assert user.trace_id == workflow.trace_id
    remote = next(s for s in tools.values() if s.attributes["gen_ai.tool.name"] == "remote_lookup")
    assert any(u.parent_id == remote.span_id for u in by_name(spans, "lookup in the database"))


def test_a_decision_at_a_base_url_is_a_chat_span(stub, receiver):
    from workflows import customer_service

    stub.add_rule(match="Categorize customer inquiry", reply='{"decision": "simple"}')
    tasks, agents = customer_service(stub.llm)
    Process(tasks=tasks, agents=agents).workflow()

    def decision_chats(spans):  # spans come from several processes, each in its own batch
        decisions = {s.span_id for s in by_name(spans, "invoke_agent")
                     if s.attributes.get("ray_orch.task") == "categorize"}
        return [s for s in by_name(spans, "chat") if s.parent_id in decisions]

    spans = receiver.wait_for(lambda s: by_name(s, "invoke_workflow") and decision_chats(s))
    chats = decision_chats(spans)
    assert len(chats) == 1 and chats[0].kind == CLIENT
    assert chats[0].attributes["gen_ai.usage.input_tokens"] > 0
    assert chats[0].attributes["gen_ai.response.id"].startswith("chatcmpl-stub-")


def test_mcp_sdk_spans_are_never_stray_roots(stub, receiver):
    from pathlib import Path

    from ray_orch import MCP
    from ray_orch.testing import StubLLMServer

    echo = Path(__file__).resolve().parent.parent / "mcp_echo_server.py"
    stub.reply = [StubLLMServer.tool_call("get_env", {"name": "HOME"}), "done"]
    agent = Agent(role="Echo", goal="echo", llm=stub.llm, tools=[MCP(f"python {echo}")])
    Process(tasks={"a": Task(description="Echo", agent=agent)}).workflow()
    spans = receiver.wait_for(lambda s: by_name(s, "execute_tool") and
                              by_name(s, "MCP send tools/call") and by_name(s, "invoke_workflow"))
    [workflow] = by_name(spans, "invoke_workflow")
    roots = [s for s in spans if s.parent_id == ""]
    assert [r.name for r in roots] == [workflow.name]  # no "MCP send initialize", no tools/list
    [tool_span] = by_name(spans, "execute_tool")
    [sdk] = by_name(spans, "MCP send tools/call")
    assert sdk.parent_id == tool_span.span_id and sdk.scope == "mcp-python-sdk"
