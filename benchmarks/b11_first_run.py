"""B11: a first run's fan-out, in one fresh driver, beside warm runs and the floor.

W1 (split -> loop over N items -> aggregate, 100 ms per stub reply) with default agents
(``Agent()``: one member each, growing with the backlog up to ``DEFAULT_MAX_POOL``). In
ONE driver process: Ray is started (its start reported apart), then the FIRST run of the
workflow is timed with nothing warmed (no member, Supervisor nor model client started
before it), then ``repeat`` warm runs, beside a plain asyncio + aiohttp driver making the
same N calls to the same stub (the floor, measured in this process too).

Two figures per run: the whole ``workflow()`` call, and the fan-out (the loop task's
span: its first dispatch to its last iteration's end, from the run's events). The
target is the fan-out: a first run's <= 1.5x the floor (warm: about 1x). Usage:
b11_first_run.py [N] [repeat]  (default 200 3)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

os.environ.setdefault("RAY_ORCH_AUTO_RUNTIME", "0")  # a private Ray: nothing warm in it

from _baseline import run_baseline
from _common import fmt, start_ray
from b1_fan_out import workflow

from ray_orch import Process
from ray_orch.testing import StubLLMServer

LOOP = "analyze_chunk"


def fan_out_span(process: Process) -> float:
    """The loop task's span in the last run: its first ``task_started`` to its last
    ``task_finished`` (Supervisor times)."""
    started = [e.ts for e in process.events if e.task == LOOP and e.kind == "task_started"]
    ended = [e.ts for e in process.events if e.task == LOOP and e.kind == "task_finished"]
    return max(ended) - min(started)


def members_of(process: Process) -> int:
    """The most members the loop's agent had in the last run (its pool events)."""
    sizes = [e.data.get("members", 0) for e in process.events
             if e.kind == "pool" and e.agent_role == "Analyzer"]
    return max(sizes, default=0)


def one_run(stub: StubLLMServer, n: int) -> tuple[float, float, int]:
    """Whole call, fan-out span and members of one run of W1 with default agents."""
    process = workflow(stub, n, 0)
    started = time.perf_counter()
    process.workflow()
    return time.perf_counter() - started, fan_out_span(process), members_of(process)


def floor(stub: StubLLMServer, n: int, repeat: int) -> float:
    return statistics.median(asyncio.run(run_baseline(stub.base_url, n)) for _ in range(repeat))


def main(n: int = 200, repeat: int = 3) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.1) as stub:
        asyncio.run(run_baseline(stub.base_url, 20))  # the stub's own warm-up
        base = floor(stub, n, repeat)
        stub.clear()
        first_call, first_span, first_members = one_run(stub, n)
        warm = [one_run(stub, n) for _ in range(repeat)]
        assert stub.count() == (repeat + 1) * (n + 2), "every call made exactly once"
        base = statistics.median([base, floor(stub, n, repeat)])
    warm_call = statistics.median(w[0] for w in warm)
    warm_span = statistics.median(w[1] for w in warm)
    print(f"B11 N={n} default agents, aiohttp floor {fmt(base)}")
    print(f"  first run: fan-out {fmt(first_span)} ({first_span / base:.2f}x floor), "
          f"whole call {fmt(first_call)}, members {first_members}")
    print(f"  warm runs: fan-out {fmt(warm_span)} ({warm_span / base:.2f}x floor), "
          f"whole call {fmt(warm_call)} ({warm_call / base:.2f}x floor), "
          f"spans {[round(w[1], 3) for w in warm]}, members {[w[2] for w in warm]}")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
