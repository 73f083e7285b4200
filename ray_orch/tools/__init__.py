"""Tools: functions and MCP servers the model can call during an attempt.

- ``spec``: ``ToolSpec``, the ``@tool`` decorator, and the static checks of a ``tools`` list;
- ``schema``: JSON schemas from type hints and docstrings;
- ``mcp``: ``MCP`` servers (stdio, streamable HTTP) through the official SDK;
- ``execute``: one call, in the actor, as a Ray task, or on an MCP server;
- ``journal``: completed calls, reused by retried attempts and resumed runs;
- ``constrained``: tool calls as constrained JSON output (the embedded model);
- ``loop``: the tool loop of one attempt.
"""

from .execute import ToolCall
from .mcp import MCP
from .spec import ToolOptions, ToolSpec, tool, tool_specs

__all__ = ["MCP", "ToolCall", "ToolOptions", "ToolSpec", "tool", "tool_specs"]
