"""B3 (W3): a sequential chain of 20 calls of 50 ms, each given the previous output.
Ideal 1.00 s; prints makespan and overhead per step beside a plain asyncio + aiohttp
chain of the same shape timed in the same driver (target: ray-orch <= 1.03x that floor).
With ``agents`` > 1 the steps go round the agents (researcher, writer, editor, ...), as
in the guide. Usage: b3_chain.py [repeat] [agents]"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer

STEPS = 20


def workflow(stub: StubLLMServer, agents: int) -> Process:
    crew = [Agent(role=f"Writer {i}", goal="Write", llm=stub.llm) for i in range(agents)]
    tasks = {f"step{i}": Task(description=f"Step {i}: improve the text", agent=crew[i % agents])
             for i in range(STEPS)}
    return Process(tasks=tasks, agents=crew, name="b3", metrics=False)


async def floor(stub: StubLLMServer) -> None:
    """The same chain with plain asyncio + one aiohttp session: each call is given the
    previous reply."""
    url = f"{stub.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {stub.api_key}"}
    async with aiohttp.ClientSession() as session:
        previous = ""
        for i in range(STEPS):
            body = {"model": "stub", "messages": [
                {"role": "user", "content": f"Step {i}: improve the text {previous}"}]}
            async with session.post(url, json=body, headers=headers) as resp:
                previous = str((await resp.json())["choices"][0]["message"]["content"])


def main(repeat: int = 5, agents: int = 1) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.05) as stub:
        workflow(stub, agents).sequential()
        ours, runs = timed(lambda: workflow(stub, agents).sequential(), repeat)
        http = [r.t_end - r.t_start for r in stub.requests[-STEPS:]]
        base, _ = timed(lambda: asyncio.run(floor(stub)), repeat)
    ideal = STEPS * 0.05
    crew = f"{agents} agent{'s' if agents > 1 else ''}"
    print(f"B3 ({crew}): ray-orch {fmt(ours)} (runs {[round(r, 3) for r in runs]})"
          f"  ideal {fmt(ideal)}"
          f"  overhead/step {(ours - ideal) / STEPS * 1000:.1f} ms"
          f"  (stub time/step {sum(http) / len(http) * 1000:.1f} ms)")
    print(f"B3 ({crew}): plain aiohttp, same chain: {fmt(base)}"
          f"  ({(base - ideal) / STEPS * 1000:.1f} ms/step)  ray-orch / floor {ours / base:.3f}x"
          f"  (+{(ours - base) / STEPS * 1000:.2f} ms/step)")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
