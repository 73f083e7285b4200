"""MCP sessions on Ray (the node's session actor) against real servers: restart after
the server dies, the in-flight call's short typed error, two prefixed instances of
``mcp-server-time``, progress as stream events, images for models that take them."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from ray_orch import MCP, Agent, Process, Task
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")
ECHO = Path(__file__).resolve().parent.parent / "mcp_echo_server.py"
TIME = f"{sys.executable} -m mcp_server_time"


def sessions_of(server: MCP) -> list[dict]:
    from actors.mcp_session import node_sessions

    return [row for node in node_sessions() for row in node["sessions"]
            if row["key"] == server.key]


def one_call(stub, tool: str, arguments: dict):
    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call(tool, arguments)
        return "Result: " + request.tool_results[-1]["content"]
    stub.reply = script


def run(agent, description="Go"):
    task = Task(description=description, agent=agent)
    return Process(tasks={"t": task}, agents=[agent]).workflow()["t"]


def test_a_killed_stdio_server_is_started_again_on_the_next_run(stub):
    server = MCP(f"{TIME} --local-timezone UTC")
    one_call(stub, "get_current_time", {"timezone": "Asia/Tokyo"})
    agent = Agent(role="Clock", goal="tell the time", llm=stub.llm, tools=[server])
    first = run(agent)
    assert '"timezone": "Asia/Tokyo"' in first.raw
    [row] = sessions_of(server)
    assert row["alive"] and row["server_pid"] and row["restarts"] == 0
    os.kill(row["server_pid"], signal.SIGKILL)  # the next run may find it dying: either
    second = run(agent)  # it is seen dead and started again, or (a read-only tool) the
    # call that found it dying is made again on a new session
    [call] = second.metadata["tool_calls"]
    assert call["ok"] and '"timezone": "Asia/Tokyo"' in second.raw, call["error"]
    [row] = sessions_of(server)
    assert row["restarts"] == 1 and row["alive"] and row["server_pid"] != 0


def test_the_call_in_flight_fails_short_and_typed_and_the_next_call_works(stub):
    def script(request):
        done = len(request.tool_results)
        if done == 0:
            return StubLLMServer.tool_call("die", {})
        if done == 1:
            return StubLLMServer.tool_call("get_env", {"name": "HOME"})
        return "done"

    stub.reply = script
    server = MCP(f"python {ECHO}")
    agent = Agent(role="Echo", goal="echo", llm=stub.llm, tools=[server])
    out = run(agent)
    died, after = out.metadata["tool_calls"]
    assert not died["ok"] and died["error_type"] == "MCPSessionError"
    assert died["error"].startswith("MCPSessionError: MCP server command")
    assert "exited during the call of 'die'" in died["error"]
    assert len(died["error"]) < 400 and "\x1b[" not in died["error"]
    assert "Traceback" not in died["error"] and "RayTaskError" not in died["error"]
    seen_by_model = stub.requests[1].tool_results[0]["content"]
    assert "MCPSessionError" in seen_by_model and "Traceback" not in seen_by_model
    assert after["ok"] and after["result"] not in ("", "<unset>")


def test_two_prefixed_instances_of_one_server(stub):
    utc = MCP(f"{TIME} --local-timezone UTC", prefix="utc")
    tokyo = MCP(f"{TIME} --local-timezone Asia/Tokyo", prefix="tokyo")

    def script(request):
        if not request.tool_results:
            return {"tool_calls": [
                {"name": "utc_convert_time", "arguments": {
                    "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}},
                {"name": "tokyo_get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}]}
        return " | ".join(r["content"] for r in request.tool_results)

    stub.reply = script
    agent = Agent(role="Clock", goal="time", llm=stub.llm, tools=[utc, tokyo])
    out = run(agent)
    offered = sorted(stub.requests[0].tools)
    assert offered == ["tokyo_convert_time", "tokyo_get_current_time", "utc_convert_time",
                       "utc_get_current_time"]
    assert [c["name"] for c in out.metadata["tool_calls"]] == ["utc_convert_time",
                                                               "tokyo_get_current_time"]
    assert all(c["ok"] for c in out.metadata["tool_calls"])
    assert "21:00" in out.raw and '"timezone": "Asia/Tokyo"' in out.raw


def test_progress_notifications_are_stream_events(stub):
    one_call(stub, "slow_count", {"steps": 3})
    agent = Agent(role="Counter", goal="count", llm=stub.llm, tools=[MCP(f"python {ECHO}")])
    process = Process(tasks={"t": Task(description="Count", agent=agent)}, agents=[agent])
    events = list(process.stream())
    progress = [e for e in events if e.kind == "tool_progress"]
    assert [(e.data["progress"], e.data["total"]) for e in progress] == [(1, 3), (2, 3), (3, 3)]
    assert all(e.tool == "slow_count" and e.task == "t" for e in progress)
    assert progress[-1].data["message"] == "step 3 of 3"
    kinds = [e.kind for e in events]
    assert kinds.index("tool_progress") < kinds.index("run_completed")


@pytest.mark.parametrize("vision", [True, False])
def test_images_go_to_models_that_take_them(stub, vision):
    one_call(stub, "chart", {})
    llm = {**stub.llm, "supports_vision": vision}
    agent = Agent(role="Charts", goal="chart", llm=llm, tools=[MCP(f"python {ECHO}")])
    run(agent)
    second = stub.requests[1].messages
    tool_message = next(m for m in second if m["role"] == "tool")
    assert "[image 1: image/png, 70 B]" in tool_message["content"]
    assert "iVBOR" not in tool_message["content"]
    images = [part for m in second if m["role"] == "user" and isinstance(m["content"], list)
              for part in m["content"] if part.get("type") == "image_url"]
    if vision:
        [image] = images
        assert image["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    else:
        assert images == [] and "not shown" in tool_message["content"]


def test_status_shows_each_session(stub):
    from ray_orch.api.jobs import format_status

    server = MCP(f"{TIME} --local-timezone UTC", name="clock")
    one_call(stub, "get_current_time", {"timezone": "UTC"})
    run(Agent(role="Clock", goal="t", llm=stub.llm, tools=[server]))
    from actors.mcp_session import node_sessions

    report = {"address": "local", "auth_mode": "none", "mcp_sessions": node_sessions()}
    text = format_status(report)
    line = next(line for line in text.splitlines() if "mcp clock" in line)
    assert "(stdio) alive" in line and "2 tools" in line and "server pid" in line
