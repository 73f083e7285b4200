"""B2 (W2): a chain of 5 fast calls (50 ms) beside one slow call (250 ms), joined by a
final 50 ms call. Critical path: 0.30 s. Target: makespan <= 1.1x the critical path.
Usage: b2_mixed_latency.py [repeat]"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer


def workflow(stub: StubLLMServer) -> Process:
    agent = Agent(role="Worker", goal="Work", llm=stub.llm, pool_size=2)
    tasks = {f"fast{i}": Task(description=f"Fast step {i}", agent=agent,
                              context=[f"fast{i - 1}"] if i else [])
             for i in range(5)}
    tasks["slow"] = Task(description="Slow step", agent=agent)
    tasks["join"] = Task(description="Join both", agent=agent, context=["fast4", "slow"])
    return Process(tasks=tasks, agents=[agent], name="b2", metrics=False)


async def floor(stub: StubLLMServer) -> None:
    """The same shape with plain asyncio + aiohttp: the chain beside the slow call, then
    the join (what the stub itself adds to the 0.300 s critical path)."""
    url = f"{stub.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {stub.api_key}"}
    async with aiohttp.ClientSession() as session:
        async def call(text: str) -> str:
            body = {"model": "stub", "messages": [{"role": "user", "content": text}]}
            async with session.post(url, json=body, headers=headers) as resp:
                return str((await resp.json())["choices"][0]["message"]["content"])

        async def chain() -> None:
            previous = ""
            for i in range(5):
                previous = await call(f"Fast step {i} {previous}")

        await asyncio.gather(chain(), call("Slow step"))
        await call("Join both")


def main(repeat: int = 5) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.05) as stub:
        stub.add_rule(match="Slow step", latency=0.25)
        workflow(stub).workflow()
        ours, runs = timed(lambda: workflow(stub).workflow(), repeat)
        base, _ = timed(lambda: asyncio.run(floor(stub)), repeat)
    print(f"B2: ray-orch {fmt(ours)} (runs {[round(r, 3) for r in runs]})  critical path 0.300 s"
          f"  ratio {ours / 0.3:.2f}x  (plain aiohttp, same shape: {fmt(base)} ="
          f" {base / 0.3:.2f}x)")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
