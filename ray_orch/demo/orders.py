"""The demo's tool: a support agent looks up a customer's order, offline.

The embedded model has no native tool calling, so ray-orch offers tools to it through
constrained JSON output (the tool choice and its arguments as one schema); the tool's
result goes back to the model, which then answers. ``ray-orch demo`` runs
``order_lookup_workflow()`` after the customer-service workflow (``--no-tools`` skips it);
``examples/tools_offline_orders.py`` runs it on its own.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ray_orch.api.process import Process
from ray_orch.core.errors import RunError
from ray_orch.policy.agent import Agent
from ray_orch.policy.task import Task

__all__ = ["ORDERS", "lookup_order", "order_lookup_workflow", "show_order_lookup"]

ORDERS = {
    "alice": {"order_id": "A-1001", "status": "shipped", "eta": "2 days"},
    "bob": {"order_id": "B-2002", "status": "processing", "eta": "5 days"},
}


def lookup_order(customer: str) -> dict[str, str]:
    """Look up the latest order of a customer.

    Args:
        customer: the customer's first name, lower case (e.g. "alice").
    """
    order = ORDERS.get(customer.strip().lower())
    if order is None:
        raise KeyError(f"no customer named {customer!r}; known: {', '.join(ORDERS)}")
    return order


def order_lookup_workflow(customer: str = "alice", llm: Any = None,
                          **process_options: Any) -> Process:
    """A one-task workflow: a support agent answers with the order the tool found.

    Args:
        customer: whose order to ask about.
        llm: the model (None: ``RAY_ORCH_MODEL``, else the embedded offline model).
        **process_options: passed to ``Process``.

    Returns:
        The process (run it with ``.workflow()``).
    """
    support = Agent(role="Order Support", goal="Tell customers where their order is",
                    llm=llm, tools=[lookup_order], max_tool_calls=3, max_tokens=120)
    task = Task(description=f"Customer {customer} asks: where is my order? Look it up with "
                            "the lookup_order tool, then answer in one sentence.",
                agent=support, max_retries=1)
    return Process(tasks={"answer": task}, agents=[support], name="offline_orders",
                   **process_options)


def show_order_lookup(console: Console, customer: str = "alice") -> bool:
    """Run the tool workflow and print the answer and every tool call; False on failure."""
    console.print(f"[bold]A tool call, offline:[/] customer {customer} asks where their "
                  "order is; the agent calls lookup_order")
    try:
        output = order_lookup_workflow(customer, progress=False).workflow()["answer"]
    except RunError as exc:
        console.print(f"[red]the tool workflow failed:[/] {exc}")
        return False
    for call in output.metadata.get("tool_calls", []):
        result = call.get("result") if call["ok"] else call["error"]
        console.print(f"  tool {call['name']}({call['arguments']}) -> {result} "
                      f"[dim]({call['where']}, {call['duration_s'] * 1000:.0f} ms)[/]",
                      highlight=False)
    console.print(f"  answer: {output.raw}", highlight=False)
    return True
