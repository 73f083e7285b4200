"""A secret inside a tool's exception text never reaches the model, the call's record or
events (red team, round 3): the agent's API key and provider variables are scrubbed."""

from __future__ import annotations

import asyncio
from collections import Counter

from ray_orch import Agent, Task
from ray_orch.tools.loop import _turn, tool_run_for


def test_a_tool_error_is_scrubbed_of_known_secrets(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_API_KEY", "wh-secret-1234567890")

    def lookup(sku: str) -> str:
        """Look a SKU up."""
        raise RuntimeError("auth failed for key wh-secret-1234567890 "
                           "(agent key ak-live-0123456789abcdef)")

    agent = Agent(role="Stock", goal="Count", llm="openai/m",
                  api_key="ak-live-0123456789abcdef", tools=[lookup])
    task = Task(description="Count stock", agent=agent, name="count")
    run = tool_run_for(task, agent, inputs=None, context={}, iteration=None)
    assert run is not None
    request = {"id": "c1", "function": {"name": "lookup", "arguments": '{"sku": "Z"}'}}
    [call] = asyncio.run(_turn(run, [request], Counter()))
    assert not call.ok
    for text in (call.error, call.result, str(run.log)):
        assert "wh-secret-1234567890" not in text
        assert "ak-live-0123456789abcdef" not in text
        assert "***" in text
    assert "RuntimeError: auth failed for key ***" in call.error
