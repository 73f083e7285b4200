"""A remote tool: each call runs as a Ray task with its own resources.

``@tool(remote=True, num_cpus=1)`` sends every call of ``count_primes`` to a Ray worker
with one CPU (``num_gpus=1`` would put it on a GPU node while the agent's actor stays on
a CPU node). The three calls the model asks for in one turn run at the same time.

Run:
    python examples/19_remote_tool.py            # a scripted model (offline, exact)
    python examples/19_remote_tool.py --live     # RAY_ORCH_MODEL, else the embedded one
"""

from __future__ import annotations

import os
import sys

from ray_orch import Agent, Process, Task, tool
from ray_orch.testing import StubLLMServer


@tool(remote=True, num_cpus=1, timeout=60)
def count_primes(limit: int) -> dict[str, int]:
    """Count the primes below a limit (CPU-heavy: it runs as a Ray task).

    Args:
        limit: count primes below this number.
    """
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, limit, i)))
    return {"limit": limit, "primes": sum(sieve), "pid": os.getpid()}


def scripted_model(request):
    if not request.tool_results:
        return StubLLMServer.tool_calls(*[("count_primes", {"limit": n})
                                          for n in (10_000, 100_000, 1_000_000)])
    return "Prime counts: " + "; ".join(m["content"] for m in request.tool_results)


def main(argv: list[str]) -> int:
    live = "--live" in argv
    stub = None if live else StubLLMServer(reply=scripted_model).start()
    try:
        analyst = Agent(role="Number Analyst", goal="Answer with exact counts",
                        llm=None if live else stub.llm, tools=[count_primes], max_tokens=200)
        task = Task(description="How many primes are below 10,000, 100,000 and 1,000,000?",
                    agent=analyst)
        output = Process(tasks={"primes": task}, agents=[analyst],
                         name="remote_tool").workflow()["primes"]
        print(output.raw)
        actor_pid = output.metadata["actor_pid"]
        for call in output.metadata["tool_calls"]:
            print(f"  {call['name']}({call['arguments']}) ran {call['where']} in pid "
                  f"{call['pid']} (the agent's actor: pid {actor_pid})")
        remote = all(c["where"] == "remote" and c["pid"] != actor_pid
                     for c in output.metadata["tool_calls"])
        print(f"every call ran as a Ray task in another process: {remote}")
    finally:
        if stub is not None:
            stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
