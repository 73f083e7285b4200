"""An MCP server of our own on the official ``mcp`` SDK, for tests: it echoes its
environment and exercises the parts of the protocol a client should honour.

Run it over stdio (``python tests/mcp_echo_server.py``) or streamable HTTP
(``python tests/mcp_echo_server.py http PORT``). No network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.utilities.types import Image
from mcp.types import EmbeddedResource, ResourceLink, TextResourceContents, ToolAnnotations

server = MCPServer("echo")
# A 1x1 PNG.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8Dw"
                         "HwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_env(name: str) -> str:
    """The value of an environment variable of this server's process ('<unset>' if none)."""
    return os.environ.get(name, "<unset>")


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def delete_record(record: str) -> str:
    """Delete a record (pretend)."""
    return f"deleted {record}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def append_note(note: str) -> str:
    """Append a note (not destructive)."""
    return f"noted {note}"


@server.tool()
async def slow_count(steps: int, ctx: Context) -> str:
    """Count to ``steps``, reporting progress at each step."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
        await asyncio.sleep(0.2)
    return f"counted to {steps}"


@server.tool()
async def say_hello_to_log(ctx: Context) -> str:
    """Write a line to the client's log."""
    await ctx.info("hello from the echo server")
    return "logged"


@server.tool()
def chart() -> list:
    """A chart (an image), with a caption."""
    return ["a chart of one pixel", Image(data=PIXEL, format="png")]


@server.tool()
def references() -> list:
    """A resource link and an embedded resource."""
    return [ResourceLink(type="resource_link", name="readme", uri="notes://readme",
                         mime_type="text/plain", description="the notes"),
            EmbeddedResource(type="resource", resource=TextResourceContents(
                uri="notes://inline", mime_type="text/plain", text="inline note text"))]


@server.tool()
def stats() -> dict[str, int]:
    """Structured statistics."""
    return {"records": 3, "notes": 2}


@server.tool()
def header(name: str, ctx: Context) -> str:
    """An HTTP request header as the server received it ('<none>' over stdio)."""
    headers = ctx.headers or {}
    return str({k.lower(): v for k, v in headers.items()}.get(name.lower(), "<none>"))


@server.tool()
async def add_tool(ctx: Context) -> str:
    """Add a tool named 'late_tool' and tell the client the list changed."""
    def late_tool() -> str:
        """A tool added while the server runs."""
        return "late"

    server.add_tool(late_tool)
    await ctx.session.send_tool_list_changed()
    return "added"


@server.tool()
def die() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


@server.resource("notes://readme", name="readme", description="the notes",
                 mime_type="text/plain")
def readme() -> str:
    return "Orders ship within two days."


@server.prompt()
def summarize(topic: str) -> str:
    """Ask for a summary of a topic."""
    return f"Summarize {topic} in one sentence."


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
