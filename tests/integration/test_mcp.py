"""MCP servers as tools: real server processes made with the official ``mcp`` SDK."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_orch import MCP, Agent, Process, Task, ToolDefinitionError
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")
SERVER = Path(__file__).resolve().parents[2] / "examples" / "mcp_orders_server.py"


def ask_for(customer: str):
    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call("lookup_order", {"customer": customer})
        return "Order: " + request.tool_results[-1]["content"]
    return script


def test_a_stdio_server_is_listed_called_and_shared_per_node(stub, tmp_path):
    calls = tmp_path / "calls.txt"
    server = MCP(f"python {SERVER}", env={"ORDERS_CALL_LOG": str(calls)})
    stub.add_rule(match="Alice", reply=ask_for("alice"))
    stub.add_rule(match="Bob", reply=ask_for("bob"))
    first = Agent(role="Support", goal="help", llm=stub.llm, tools=[server])
    second = Agent(role="Billing", goal="help", llm=stub.llm, tools=[server])
    tasks = {"alice": Task(description="Where is Alice's order?", agent=first),
             "bob": Task(description="Where is Bob's order?", agent=second)}
    results = Process(tasks=tasks, agents=[first, second]).workflow()
    assert results["alice"].raw == "Order: A-1001: shipped (keyboard)"
    assert results["bob"].raw == "Order: B-2002: processing (monitor, cable)"
    assert sorted(stub.requests[0].tools) == ["add", "lookup_order"]
    for name in ("alice", "bob"):
        [call] = results[name].metadata["tool_calls"]
        assert call["where"] == "mcp" and call["ok"]
        assert call["pid"] != results[name].metadata["actor_pid"]  # the session actor
    assert results["alice"].metadata["actor_pid"] != results["bob"].metadata["actor_pid"]
    # two members, one server process: its pid is in both log lines
    lines = calls.read_text().split("\n")[:2]
    assert len({line.split()[-1] for line in lines}) == 1


def test_an_mcp_tool_error_goes_back_to_the_model(stub):
    stub.reply = ask_for("zed")
    agent = Agent(role="Support", goal="help", llm=stub.llm, tools=[MCP(f"python {SERVER}")])
    results = Process(tasks={"t": Task(description="Find Zed", agent=agent)},
                      agents=[agent]).workflow()
    [call] = results["t"].metadata["tool_calls"]
    assert not call["ok"] and "lookup_order" in call["error"]
    assert '"tool": "lookup_order"' in stub.requests[-1].tool_results[0]["content"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_streamable_http_server(stub):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server not up"
                time.sleep(0.05)
        stub.reply = ask_for("bob")
        agent = Agent(role="Web", goal="help", llm=stub.llm,
                      tools=[MCP(f"http://127.0.0.1:{port}/mcp")])
        results = Process(tasks={"t": Task(description="Find Bob", agent=agent)},
                          agents=[agent]).workflow()
        assert results["t"].raw == "Order: B-2002: processing (monitor, cable)"
        assert results["t"].metadata["tool_calls"][0]["where"] == "mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_server_that_fails_to_start_is_a_typed_error_before_any_model_call(stub):
    broken = MCP(f"{sys.executable} -c \"import sys; sys.stderr.write('missing config "
                 "file orders.toml\\n'); sys.exit(3)\"")
    agent = Agent(role="Support", goal="help", llm=stub.llm, tools=[broken])
    with pytest.raises(ToolDefinitionError) as info:
        Process(tasks={"t": Task(description="Find Bob", agent=agent)},
                agents=[agent]).workflow()
    message = str(info.value)
    assert sys.executable in message and "failed to start" in message
    assert "missing config file orders.toml" in message
    assert stub.count() == 0
