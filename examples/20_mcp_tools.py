"""Tools from an MCP server (the official ``mcp`` SDK).

``MCP("python examples/mcp_orders_server.py")`` starts the server over stdio; its tools
(``lookup_order``, ``add``) are listed when the workflow is validated and offered to the
model. On Ray, one session per node lives in a shared actor: both agents below use the
same server process. ``MCP("http://127.0.0.1:8765/mcp")`` would connect over
streamable HTTP instead.

Run:
    python examples/20_mcp_tools.py            # a scripted model (offline, exact)
    python examples/20_mcp_tools.py --live     # RAY_ORCH_MODEL, else the embedded one
"""

from __future__ import annotations

import sys
from pathlib import Path

from ray_orch import MCP, Agent, Process, Task
from ray_orch.testing import StubLLMServer

SERVER = Path(__file__).resolve().parent / "mcp_orders_server.py"


def scripted_model(request):
    if not request.tool_results:
        customer = "alice" if "Alice" in request.prompt else "bob"
        return StubLLMServer.tool_call("lookup_order", {"customer": customer})
    return f"Latest order: {request.tool_results[-1]['content']}"


def main(argv: list[str]) -> int:
    live = "--live" in argv
    stub = None if live else StubLLMServer(reply=scripted_model).start()
    try:
        orders = MCP(f"python {SERVER}")
        llm = None if live else stub.llm
        support = Agent(role="Support", goal="Answer order questions", llm=llm,
                        tools=[orders], max_tokens=200)
        billing = Agent(role="Billing", goal="Answer order questions", llm=llm,
                        tools=[orders], max_tokens=200)
        tasks = {"alice": Task(description="Where is Alice's order?", agent=support),
                 "bob": Task(description="Where is Bob's order?", agent=billing)}
        results = Process(tasks=tasks, agents=[support, billing], name="mcp_tools").workflow()
        print(f"tools offered: {[t['name'] for t in orders.list_tools()]}")
        for name, output in results.items():
            [call] = output.metadata["tool_calls"]
            print(f"{name}: {output.raw}  [{call['where']} server pid {call['pid']}]")
    finally:
        if stub is not None:
            stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
