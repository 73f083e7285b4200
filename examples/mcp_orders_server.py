"""A small MCP server made with the official ``mcp`` SDK: customer orders, no network.

Run it over stdio (what ``ray_orch.MCP("python examples/mcp_orders_server.py")`` does) or
over streamable HTTP::

    python examples/mcp_orders_server.py                       # stdio
    python examples/mcp_orders_server.py http 8765             # http://127.0.0.1:8765/mcp

Each call of ``lookup_order`` is appended to ``$ORDERS_CALL_LOG`` when that is set (tests
count side effects with it).
"""

from __future__ import annotations

import os
import sys

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]

ORDERS = {
    "alice": {"order_id": "A-1001", "status": "shipped", "items": ["keyboard"]},
    "bob": {"order_id": "B-2002", "status": "processing", "items": ["monitor", "cable"]},
}

server = MCPServer("orders")


@server.tool()
def lookup_order(customer: str) -> str:
    """Look up a customer's latest order by the customer's first name."""
    log = os.environ.get("ORDERS_CALL_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"lookup_order {customer} {os.getpid()}\n")
    order = ORDERS.get(customer.lower())
    if order is None:
        raise ValueError(f"no customer named {customer!r}")
    return f"{order['order_id']}: {order['status']} ({', '.join(order['items'])})"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()
