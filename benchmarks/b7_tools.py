"""B7: agents that act. N tasks of one agent, each making 3 parallel tool calls of 50 ms,
with the model (the stub) taking 50 ms a turn.

Prints the makespan beside the ideal (two model turns plus one tool round = 0.15 s;
target <= 1.5x), a plain-aiohttp floor doing the same turns and sleeps without
orchestration, and the overhead per call of a remote tool (a Ray task) over a local
one, from the durations each call recorded. Usage: b7_tools.py [N] [repeat]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp
from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task, tool
from ray_orch.testing import StubLLMServer

IDEAL = 0.15
TOOL_SECONDS = 0.05
SEQUENTIAL_CALLS = 30


async def fetch_rate(region: str) -> float:
    """A 50 ms lookup (an async tool)."""
    await asyncio.sleep(TOOL_SECONDS)
    return 1.0


@tool(name="fetch_rate", remote=True, num_cpus=0)
def fetch_rate_remote(region: str) -> float:
    """The same 50 ms lookup, as a Ray task."""
    time.sleep(TOOL_SECONDS)
    return 1.0


def script(request):  # first turn: three calls at once; second turn: the answer
    if not request.tool_results:
        return StubLLMServer.tool_calls(*[("fetch_rate", {"region": r})
                                          for r in ("eu", "us", "apac")])
    return "rates: " + ",".join(m["content"] for m in request.tool_results)


def workflow(stub: StubLLMServer, n: int, *, remote: bool) -> Process:
    agent = Agent(role="Trader", goal="Quote rates", llm=stub.llm, max_concurrency=max(1, n),
                  tools=[fetch_rate_remote if remote else fetch_rate])
    task = Task(description="Quote item {item}", agent=agent, task_type="loop",
                loop_data=list(range(n)))
    return Process(tasks={"quote": task}, agents=[agent], name="b7", metrics=False)


def call_durations(process: Process) -> list[float]:
    """The duration each tool call recorded (all iterations of the loop)."""
    return [c["duration_s"] for c in process.results["quote"].metadata["tool_calls"]]


async def floor(base_url: str, n: int) -> float:
    """The same work with plain asyncio + aiohttp: turn, 3 sleeps at once, turn."""
    url = f"{base_url}/chat/completions"
    body = {"model": "stub", "messages": [{"role": "user", "content": "x"}]}
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            async with session.post(url, json=body) as resp:
                await resp.read()
            await asyncio.gather(*(asyncio.sleep(TOOL_SECONDS) for _ in range(3)))
            second = {**body, "messages": [*body["messages"],
                                           {"role": "tool", "tool_call_id": "c", "content": "1"}]}
            async with session.post(url, json=second) as resp:
                await resp.read()
        await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started


def chain_script(request):  # one call per turn, SEQUENTIAL_CALLS turns, then the answer
    done = len(request.tool_results)
    if done < SEQUENTIAL_CALLS:
        return StubLLMServer.tool_call("fetch_rate", {"region": f"r{done}"})
    return "done"


def per_call(stub: StubLLMServer, remote: bool) -> float:
    """Mean duration (s) of a tool call made one at a time (no queueing)."""
    agent = Agent(role="Caller", goal="Call", llm=stub.llm, max_tool_calls=SEQUENTIAL_CALLS,
                  tools=[fetch_rate_remote if remote else fetch_rate])
    durations: list[float] = []
    for _ in range(2):  # the first round warms workers up
        process = Process(tasks={"chain": Task(description="Chain calls", agent=agent)},
                          agents=[agent], name="b7-chain", metrics=False)
        durations = [c["duration_s"] for c in
                     process.workflow()["chain"].metadata["tool_calls"]]
    return statistics.mean(durations)


def main(n: int = 200, repeat: int = 3) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(reply=script, latency=0.05) as stub:
        workflow(stub, n, remote=False).workflow()  # warm-up: actors
        stub.clear()
        processes: list[Process] = []

        def run() -> None:
            process = workflow(stub, n, remote=False)
            process.workflow()
            processes.append(process)

        makespan, runs = timed(run, repeat)
        assert stub.count() == repeat * n * 2, "two model turns per task"
        mean = statistics.mean(d for p in processes for d in call_durations(p))
        base = asyncio.run(floor(stub.base_url, n))
    with StubLLMServer(reply=chain_script, latency=0.0) as stub:
        local, remote = per_call(stub, False), per_call(stub, True)
    print(f"B7 N={n} tasks x 3 parallel 50 ms tool calls, 50 ms model turns: makespan "
          f"{fmt(makespan)} (runs {[round(r, 3) for r in runs]})  ideal {IDEAL:.3f} s  "
          f"ratio {makespan / IDEAL:.2f}x (target <= 1.5x)  mean call {mean * 1000:.1f} ms")
    print(f"B7 plain aiohttp floor (same turns and sleeps, no orchestration): {fmt(base)}  "
          f"ray-orch / floor {makespan / base:.2f}x")
    print(f"B7 one call at a time: local {local * 1000:.2f} ms, remote (Ray task) "
          f"{remote * 1000:.2f} ms: remote overhead {(remote - local) * 1000:.2f} ms per call "
          "(target <= 3 ms)")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
