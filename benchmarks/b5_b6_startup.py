"""B5: cold start to first dispatched task (target <= 8 s here): a fresh process imports
ray_orch, starts Ray, and runs one task; the stub records when the first request came.
B6: a pool of 32 agents ready (target <= 8 s, <= 100 MB PSS per idle agent), beside the
floor of this machine at that moment: 32 bare Ray actors, started the same way (a fresh
Ray, after the same first run; the two kinds alternate, so drift in the machine's load
hits both). Idle Ray processes cost CPU, so each kind gets its own session.
Usage: b5_b6_startup.py [rounds]   (default 2: 2 pools and 2 bare sets)"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import fmt

from ray_orch.testing import StubLLMServer

CHILD = """
import os, sys, time
from ray_orch import Agent, Task, Process, AgentPool
llm = {"model": "openai/stub", "base_url": sys.argv[1], "api_key": "sk-stub"}
agent = Agent(role="First", goal="Go", llm=llm)
Process(tasks={"one": Task(description="First task", agent=agent)}, agents=[agent],
        metrics=False).workflow()
import ray


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total / len(pids)


def pss_mb(pids):
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024 / len(pids)


@ray.remote(num_cpus=0)
class Bare:
    def pid(self):
        return os.getpid()


started = time.time()
if sys.argv[2] == "pool":
    pool = AgentPool({"role": "Pooled", "goal": "Idle", "llm": llm}, pool_size=32)
    pids = ray.get([m.info.remote() for m in pool.members])
    ready = time.time() - started
    pids = [p["pid"] for p in pids]
else:
    actors = [Bare.remote() for _ in range(32)]
    pids = ray.get([a.pid.remote() for a in actors])
    ready = time.time() - started
print(f"READY {ready:.3f} {pss_mb(pids):.1f} {cpu_seconds(pids):.3f}")
"""


def child(stub: StubLLMServer, kind: str) -> tuple[float, float, float, float]:
    """One fresh session: (first request after start, ready s, PSS MB, CPU s a process)."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ORCH_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    seen = len(stub.requests)
    started = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, stub.base_url, kind], env=env,
                         capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode:
        print(out.stderr[-3000:])
    first = stub.requests[seen].t_start - started if len(stub.requests) > seen else float("nan")
    line = next((s for s in out.stdout.splitlines() if s.startswith("READY")), "READY nan nan nan")
    ready, pss, cpu = (float(v) for v in line.split()[1:])
    return first, ready, pss, cpu


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    runs: dict[str, list[tuple[float, float, float, float]]] = {"pool": [], "bare": []}
    with StubLLMServer() as stub:
        for _ in range(rounds):
            for kind in ("pool", "bare"):
                runs[kind].append(child(stub, kind))
    pool, bare = runs["pool"], runs["bare"]
    median = statistics.median
    print(f"B5 cold start to first dispatched task: {fmt(median(r[0] for r in pool + bare))} "
          f"(median of {len(pool + bare)})")
    print(f"B6 pool of 32 agents ready: {median(r[1] for r in pool):.2f} s "
          f"({', '.join(f'{r[1]:.2f}' for r in pool)}), mean PSS per idle member "
          f"{median(r[2] for r in pool):.0f} MB, CPU per member to ready "
          f"{median(r[3] for r in pool):.2f} s")
    print(f"   32 bare Ray actors, same way: {median(r[1] for r in bare):.2f} s "
          f"({', '.join(f'{r[1]:.2f}' for r in bare)}), PSS {median(r[2] for r in bare):.0f} MB, "
          f"CPU per actor {median(r[3] for r in bare):.2f} s; pool / bare "
          f"{median(r[1] for r in pool) / median(r[1] for r in bare):.2f}x")


if __name__ == "__main__":
    main()
