"""B9 (live runs): how soon the driver sees a model's token, and what streaming costs.

1. Delay: one task whose model answer is 40 words sent 20 ms apart (SSE). For each word,
   the time from the stub writing its chunk to the driver receiving its ``token`` event
   (same machine, same clock). Target: median <= 10 ms.
2. Throughput: the W1 shape (a fan-out of N tasks of 50 ms and one join) with
   ``stream()`` and tokens off against ``workflow()``, and with tokens on; beside the
   plain-aiohttp floor of the same shape. Target: no loss beyond noise with tokens off.
Usage: b9_stream.py [N] [repeat]"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from _baseline import run_baseline
from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer


def delays(stub: StubLLMServer, words: int = 40, interval: float = 0.02) -> list[float]:
    stub.reply = " ".join(f"w{i}" for i in range(words))
    stub.stream_interval = interval
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    process = Process(tasks={"a": Task(description="Speak", agent=agent)}, metrics=False)
    seen = [time.time() for ev in process.stream(tokens=True) if ev.kind == "token"]
    sent = stub.requests[-1].chunk_times
    assert len(seen) == len(sent) == words, (len(seen), len(sent))
    return [(a - s) * 1000 for a, s in zip(seen, sent, strict=True)]


def fan_out(stub: StubLLMServer, n: int) -> Process:
    agent = Agent(role="Analyst", goal="Analyze", llm=stub.llm)
    tasks = {f"chunk{i}": Task(description=f"Analyze data chunk {i}", agent=agent)
             for i in range(n)}
    tasks["aggregate"] = Task(description="Aggregate", agent=agent, context=list(tasks))
    return Process(tasks=tasks, agents=[agent], name="b9", metrics=False)


def drain(process: Process, tokens: bool) -> None:
    for _ in process.stream(tokens=tokens):
        pass


def main(n: int = 200, repeat: int = 5) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer() as stub:
        delays(stub)  # warm-up: actors up, first stream
        found = sorted(d for _ in range(3) for d in delays(stub))
        p95 = found[int(0.95 * (len(found) - 1))]
        print(f"B9 token delay, model chunk -> driver event: median "
              f"{statistics.median(found):.1f} ms, p95 {p95:.1f} ms ({len(found)} tokens)")
    with StubLLMServer(latency=0.05, reply="analysis of the chunk done") as stub:
        fan_out(stub, n).workflow()
        plain, _ = timed(lambda: fan_out(stub, n).workflow(), repeat)
        off, _ = timed(lambda: drain(fan_out(stub, n), False), repeat)
        on, _ = timed(lambda: drain(fan_out(stub, n), True), repeat)
        base, _ = timed(lambda: asyncio.run(run_baseline(stub.base_url, n + 1)), repeat)
    print(f"B9 throughput N={n}: workflow() {fmt(plain)}  stream() tokens off {fmt(off)} "
          f"({off / plain:.2f}x)  tokens on {fmt(on)} ({on / plain:.2f}x)  "
          f"plain aiohttp floor {fmt(base)}")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
