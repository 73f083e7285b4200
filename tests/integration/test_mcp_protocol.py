"""The MCP client against real servers, in this process (no Ray): the official
``mcp-server-time`` from PyPI, an echo server of our own on the ``mcp`` SDK
(``tests/mcp_echo_server.py``), and ``@modelcontextprotocol/server-everything`` from npm
where Node is present."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_orch import MCP, ToolDefinitionError
from ray_orch.core.errors import MCPSessionError
from ray_orch.tools.mcp import MCPCall, local_call, pool_of_this_loop
from ray_orch.tools.spec import tool_specs

ECHO = Path(__file__).resolve().parent.parent / "mcp_echo_server.py"
TIME = f"{sys.executable} -m mcp_server_time"
SECRET = "driver-secret-3f9a1c"


def call(server: MCP, tool: str, **arguments):
    async def go():
        return await local_call(MCPCall(server=server, tool=tool, arguments=arguments))
    return asyncio.run(go())


def test_a_startup_failure_carries_the_command_and_the_servers_stderr():
    server = MCP(f"{TIME} --local-timezone Not/AZone")
    with pytest.raises(ToolDefinitionError) as info:
        server.list_tools()
    message = str(info.value)
    assert f"MCP server command '{TIME} --local-timezone Not/AZone' failed to start" in message
    assert "--- stderr (tail) ---" in message
    assert "invalid --local-timezone 'Not/AZone'" in message  # the server's own words


def test_a_stdio_server_gets_the_safe_environment_and_what_env_gives(monkeypatch):
    monkeypatch.setenv("RAY_ORCH_TEST_SECRET", SECRET)
    server = MCP(f"python {ECHO}", env={"EXPLICIT_SETTING": "given"})
    assert call(server, "get_env", name="RAY_ORCH_TEST_SECRET").text == "<unset>"
    assert call(server, "get_env", name="EXPLICIT_SETTING").text == "given"
    assert call(server, "get_env", name="HOME").text not in ("", "<unset>")


def test_content_types_become_text_and_image_parts():
    server = MCP(f"python {ECHO}")
    chart = call(server, "chart")
    assert chart.text == "a chart of one pixel\n[image 1: image/png, 70 B]"
    [image] = chart.images
    assert image.mime_type == "image/png" and image.data.startswith("iVBOR")
    refs = call(server, "references").text
    assert refs == ("[resource link: readme <notes://readme> (text/plain): the notes]\n"
                    "[resource notes://inline]\ninline note text")
    stats = call(server, "stats").text
    assert '"records": 3' in stats
    for text in (chart.text, refs, stats):
        assert "type=" not in text and "annotations=" not in text  # no object dumps


def test_time_server_results_are_its_json_text():
    reply = call(MCP(f"{TIME} --local-timezone UTC"), "get_current_time",
                 timezone="Europe/Paris")
    assert reply.ok and '"timezone": "Europe/Paris"' in reply.text and not reply.images


def test_two_instances_need_prefixes_and_the_message_says_so():
    utc, paris = MCP(f"{TIME} --local-timezone UTC"), MCP(f"{TIME} --local-timezone Europe/Paris")
    with pytest.raises(ToolDefinitionError) as info:
        tool_specs([utc, paris], who="agent 'Clock'", probe=True)
    message = str(info.value)
    assert "two tools are named 'get_current_time'" in message
    assert utc.target in message and paris.target in message and "prefix=" in message
    a = MCP(utc.target, prefix="utc")
    b = MCP(paris.target, prefix="paris")
    names = [s.name for s in tool_specs([a, b], who="agent 'Clock'", probe=True)]
    assert names == ["utc_get_current_time", "utc_convert_time",
                     "paris_get_current_time", "paris_convert_time"]
    spec = tool_specs([b], who="x")[0]
    assert spec.server_tool == "get_current_time"  # the server is called by its own name


def test_annotations_set_replay_and_approval():
    plain = {s.name: s.options for s in tool_specs([MCP(f"python {ECHO}")], who="x",
                                                   probe=True)}
    assert plain["get_env"].replay is False  # read-only: simply called again
    assert plain["delete_record"].replay is True and not plain["delete_record"].requires_approval
    careful = {s.name: s.options for s in tool_specs(
        [MCP(f"python {ECHO}", approve_destructive=True, replay=False)], who="x", probe=True)}
    assert careful["delete_record"].requires_approval  # destructiveHint
    assert careful["slow_count"].requires_approval  # no hints: destructive by the spec
    assert not careful["append_note"].requires_approval  # destructiveHint=False
    assert not careful["get_env"].requires_approval  # readOnlyHint
    assert careful["delete_record"].replay is False  # replay=False


def test_tools_that_require_task_support_are_not_offered():
    server = MCP("unused-command")
    server.listed = [{"name": "plain", "parameters": {"type": "object"}},
                     {"name": "needs_tasks", "task_support": "required"},
                     {"name": "may_use_tasks", "task_support": "optional"}]
    assert [s.name for s in tool_specs([server], who="x")] == ["plain", "may_use_tasks"]


def test_resources_and_prompts():
    server = MCP(f"python {ECHO}")
    [readme] = server.resources()
    assert readme["uri"] == "notes://readme" and "Orders ship within two days." in readme["text"]
    assert server.prompt("summarize", {"topic": "orders"}) == [
        {"role": "user", "content": "Summarize orders in one sentence."}]


def test_server_logging_progress_and_list_changed(caplog):
    server = MCP(f"python {ECHO}")
    server.list_tools()
    seen = []

    async def go():
        with caplog.at_level(logging.INFO, logger="ray_orch.mcp"):
            await local_call(MCPCall(server=server, tool="say_hello_to_log", arguments={}))
            await local_call(MCPCall(server=server, tool="slow_count", arguments={"steps": 3}),
                             lambda done, total, message: seen.append((done, total, message)))
            await local_call(MCPCall(server=server, tool="add_tool", arguments={}))
            for _ in range(100):  # the refresh runs when the notification arrives
                if "late_tool" in [t["name"] for t in server.listed or []]:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(go())
    assert any("hello from the echo server" in r.getMessage() for r in caplog.records)
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]
    assert "late_tool" in [t["name"] for t in server.listed]


def test_a_server_that_dies_mid_call_fails_that_call_and_starts_again():
    server = MCP(f"python {ECHO}")

    async def go():
        with pytest.raises(MCPSessionError) as info:
            await local_call(MCPCall(server=server, tool="die", arguments={}))
        after = await local_call(MCPCall(server=server, tool="get_env",
                                         arguments={"name": "HOME"}))
        return str(info.value), after, pool_of_this_loop().info()

    message, after, [row] = asyncio.run(go())
    assert "exited during the call of 'die'" in message and len(message) < 400
    assert after.ok and row["restarts"] == 1 and row["alive"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_headers_reach_the_server_and_the_session_reconnects():
    port = _free_port()

    def serve():
        return subprocess.Popen([sys.executable, str(ECHO), "http", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_up(proc):
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server not up"
                time.sleep(0.05)

    proc = serve()
    server = MCP(f"http://127.0.0.1:{port}/mcp", headers={"X-Api-Key": "k-123"})
    assert "k-123" not in repr(server) and "k-123" not in server.describe()

    async def go(tool, **arguments):
        return await local_call(MCPCall(server=server, tool=tool, arguments=arguments))

    async def scenario():
        first = await go("header", name="X-Api-Key")
        proc.terminate()
        proc.wait(timeout=10)
        again = serve()
        wait_up(again)
        try:
            with pytest.raises(MCPSessionError):
                await go("header", name="X-Api-Key")  # the old session is gone
            return first, await go("header", name="X-Api-Key"), again
        except BaseException:
            again.terminate()
            raise

    try:
        wait_up(proc)
        first, second, proc = asyncio.run(scenario())
        assert first.text == "k-123" and second.text == "k-123"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("npx") is None, reason="server-everything needs Node (npx)")
def test_server_everything_from_npm(monkeypatch):
    monkeypatch.setenv("RAY_ORCH_TEST_SECRET", SECRET)
    server = MCP("npx -y @modelcontextprotocol/server-everything stdio", startup_timeout=180)
    names = [s.name for s in tool_specs([server], who="x", probe=True)]
    assert "get-env" in names and "simulate-research-query" not in names  # tasks required
    env = call(server, "get-env").text
    assert SECRET not in env and "RAY_ORCH_TEST_SECRET" not in env
    image = call(server, "get-tiny-image")
    assert image.images and "[image 1: image/png" in image.text and "data=" not in image.text
    links = call(server, "get-resource-links", count=2).text
    assert "[resource link:" in links
