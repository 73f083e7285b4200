"""Offline tool calling: the embedded model looks up a customer's order (no network).

The embedded model (SmolLM2 on llama.cpp) has no native tool calling, so ray-orch offers
the tools through constrained JSON output: the tool choice and its arguments are one JSON
schema sent as ``response_format``, and llama.cpp's grammar makes the reply parse. The
result goes back to the model, which then answers.

``order_lookup_workflow()`` is what the demo runs; this file also runs on its own:

    python examples/tools_offline_orders.py [customer]
"""

from __future__ import annotations

import sys
from typing import Any

from ray_orch import Agent, Process, Task

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


def order_lookup_workflow(customer: str = "alice", llm: Any = None) -> Process:
    """A one-task workflow: a support agent answers with the order the tool found.

    Args:
        customer: whose order to ask about.
        llm: the model (None: ``RAY_ORCH_MODEL``, else the embedded offline model).
    """
    support = Agent(role="Order Support", goal="Tell customers where their order is",
                    llm=llm, tools=[lookup_order], max_tool_calls=3, max_tokens=120)
    task = Task(description=f"Customer {customer} asks: where is my order? Look it up with "
                            "the lookup_order tool, then answer in one sentence.",
                agent=support, max_retries=1)
    return Process(tasks={"answer": task}, agents=[support], name="offline_orders")


def main(argv: list[str]) -> int:
    customer = argv[0] if argv else "alice"
    output = order_lookup_workflow(customer).workflow()["answer"]
    print(f"answer: {output.raw}")
    for call in output.metadata.get("tool_calls", []):
        print(f"  tool {call['name']}({call['arguments']}) -> "
              f"{call['result'] if call['ok'] else call['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
