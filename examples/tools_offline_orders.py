"""Offline tool calling: the embedded model looks up a customer's order (no network).

The embedded model (SmolLM2 on llama.cpp) has no native tool calling, so ray-orch offers
the tools through constrained JSON output: the tool choice and its arguments are one JSON
schema sent as ``response_format``, and llama.cpp's grammar makes the reply parse. The
result goes back to the model, which then answers.

The workflow lives in ``ray_orch/demo/orders.py`` (the demo runs it); this file runs it on
its own:

    python examples/tools_offline_orders.py [customer]
"""

from __future__ import annotations

import sys

from ray_orch.demo.orders import order_lookup_workflow


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
