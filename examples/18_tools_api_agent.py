"""Guide pattern "The Retry Pattern" with a real tool: the ``api_agent`` calls the API.

The API client agent gets a tool, ``call_external_api`` (a plain function: its JSON
schema comes from the type hints, its description from the docstring). The model calls
it; the result goes back to the model as a tool message; the ``api_validation``
guardrail checks the final answer. The tool fails on its first call (a flaky API): the
error goes back to the model as the tool's result, and the model calls it again.

Run:
    python examples/18_tools_api_agent.py            # a scripted model (offline, exact)
    python examples/18_tools_api_agent.py --live     # RAY_ORCH_MODEL, else the embedded one
"""

from __future__ import annotations

import sys

from ray_orch import Agent, GuardrailResult, Process, Task
from ray_orch.testing import StubLLMServer

_calls = {"n": 0}
INVENTORY = {"keyboard": 12, "monitor": 0, "cable": 140}


def call_external_api(endpoint: str, item: str) -> dict[str, object]:
    """Call the shop's inventory API.

    Args:
        endpoint: the API path, e.g. "/stock".
        item: the item to look up.
    """
    _calls["n"] += 1
    if _calls["n"] == 1:
        raise ConnectionError("503 from inventory API (try again)")
    if endpoint != "/stock":
        raise ValueError(f"unknown endpoint {endpoint}")
    return {"item": item, "in_stock": INVENTORY.get(item, 0)}


def api_validation(output):
    """Validate API response"""
    if "error" in output.raw:
        return GuardrailResult(success=False, error=f"API error: {output.raw}")
    return GuardrailResult(success=True)


def scripted_model(request):
    """A model that calls the tool until it succeeds, then reports its result."""
    results = request.tool_results
    if not results or '"error"' in results[-1]["content"]:
        return StubLLMServer.tool_call("call_external_api",
                                       {"endpoint": "/stock", "item": "keyboard"})
    return f"Stock report: {results[-1]['content']}"


def main(argv: list[str]) -> int:
    live = "--live" in argv
    stub = None if live else StubLLMServer(reply=scripted_model).start()
    try:
        llm = None if live else stub.llm
        api_agent = Agent(role="API Client", goal="Call external APIs", llm=llm,
                          tools=[call_external_api], max_tokens=200)
        reliable_task = Task(
            description="Call external API: how many keyboards are in stock?",
            agent=api_agent,
            guardrails=[api_validation],
            validation_steps=3,
            retry_delay=0.1,
        )
        results = Process(tasks={"stock": reliable_task}, agents=[api_agent],
                          name="api_agent_tools").workflow()
        output = results["stock"]
        print(output.raw)
        for call in output.metadata["tool_calls"]:
            outcome = "ok" if call["ok"] else f"error: {call['error']}"
            print(f"  tool {call['name']}({call['arguments']}) -> {outcome} "
                  f"[{call['where']}, {call['duration_s'] * 1000:.1f} ms]")
    finally:
        if stub is not None:
            stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
