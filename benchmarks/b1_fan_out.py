"""B1 (W1): split -> loop over N items -> aggregate, 100 ms per stub reply.

Prints ray-orch's makespan beside a plain asyncio + aiohttp driver making the same N
calls to the same stub, and the ratio (target: <= 1.5x). Usage:
b1_fan_out.py [N] [repeat] [pool_size]   (pool_size 0: a default Agent(), which grows with
its backlog; target <= 1.2x the floor)
"""

from __future__ import annotations

import asyncio
import os
import sys

from _baseline import run_baseline
from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer


def workflow(stub: StubLLMServer, n: int, pool_size: int) -> Process:
    splitter = Agent(role="Splitter", goal="Split", llm=stub.llm)
    # The most parallel form, as the baseline: every item in flight at once (a member
    # runs up to max_concurrency attempts concurrently; B1_MC lowers it).
    analyzer = (Agent(role="Analyzer", goal="Analyze", llm=stub.llm) if pool_size == 0 else
                Agent(role="Analyzer", goal="Analyze", llm=stub.llm, pool_size=pool_size,
                      max_concurrency=int(os.environ.get("B1_MC", 0)) or max(1, n)))
    aggregator = Agent(role="Aggregator", goal="Aggregate", llm=stub.llm)
    tasks = {
        "split": Task(description="Split dataset into chunks", agent=splitter),
        "analyze_chunk": Task(description="Analyze data chunk {item}", agent=analyzer,
                              task_type="loop", loop_data=list(range(n)), context=["split"]),
        "aggregate": Task(description="Combine all analyses", agent=aggregator,
                          context=["analyze_chunk"]),
    }
    return Process(tasks=tasks, agents=[splitter, analyzer, aggregator], name="b1",
                   metrics=False)


def main(n: int = 1000, repeat: int = 3, pool_size: int = 2) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.1) as stub:
        workflow(stub, n, pool_size).workflow()  # warm-up: actors, litellm import
        stub.clear()
        ours, runs = timed(lambda: workflow(stub, n, pool_size).workflow(), repeat)
        assert stub.count() == repeat * (n + 2), "every call made exactly once"
        base, _ = timed(lambda: asyncio.run(run_baseline(stub.base_url, n + 2)), repeat)
    print(f"B1 N={n} pool={pool_size}: ray-orch {fmt(ours)} (runs {[round(r, 2) for r in runs]})"
          f"  aiohttp floor {fmt(base)}  ratio {ours / base:.2f}x  ideal 0.300 s")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
