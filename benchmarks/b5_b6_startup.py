"""B5: cold start to first dispatched task (target <= 8 s here): a fresh process imports
ray_orch, starts Ray, and runs one task; the stub records when the first request came.
B6: a pool of 32 agents ready (target <= 8 s, <= 100 MB PSS per idle agent), beside the
floor of the same machine at that moment: 32 bare Ray actors started in the same session.
Usage: b5_b6_startup.py"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _common import fmt

from ray_orch.testing import StubLLMServer

CHILD = """
import os, sys, time
t0 = float(sys.argv[2])
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


t1 = time.time()
pool = AgentPool({"role": "Pooled", "goal": "Idle", "llm": llm}, pool_size=32)
ray.get([m.info.remote() for m in pool.members])
t2 = time.time()
pids = [ray.get(m.info.remote())["pid"] for m in pool.members]
pss = 0
for pid in pids:
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            pss += int(line.split()[1])
print(f"POOL {t2 - t1:.3f} {pss / 1024 / len(pids):.1f} {cpu_seconds(pids):.3f}")


@ray.remote(num_cpus=0)
class Bare:
    def pid(self):
        return os.getpid()


t3 = time.time()
bare = [Bare.remote() for _ in range(32)]
bare_pids = ray.get([b.pid.remote() for b in bare])
print(f"BARE {time.time() - t3:.3f} {cpu_seconds(bare_pids):.3f}")
"""


def pss_of_bound_idle_note() -> str:
    return ("(members of a standing pool import nothing model-related until their first "
            "task; the lean client never imports litellm)")


def main() -> None:
    with StubLLMServer() as stub:
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_ORCH_PROGRESS": "0"}
        env.pop("RAY_ADDRESS", None)
        started = time.time()
        out = subprocess.run([sys.executable, "-c", CHILD, stub.base_url, str(started)],
                             env=env, capture_output=True, text=True, timeout=300,
                             cwd=Path(__file__).resolve().parent.parent)
        first = stub.requests[0].t_start if stub.requests else float("nan")
    lines = {s.split()[0]: s.split()[1:] for s in out.stdout.splitlines()
             if s.startswith(("POOL", "BARE"))}
    ready, pss, cpu = lines.get("POOL", ["nan"] * 3)
    bare, bare_cpu = lines.get("BARE", ["nan"] * 2)
    print(f"B5 cold start to first dispatched task: {fmt(first - started)}")
    print(f"B6 pool of 32 agents ready: {float(ready):.3f} s, mean PSS per idle member "
          f"{float(pss):.0f} MB {pss_of_bound_idle_note()}")
    print(f"   32 bare Ray actors started right after, in the same session: {float(bare):.3f} s "
          f"({float(ready) / float(bare):.2f}x); CPU per process to ready: member "
          f"{float(cpu):.2f} s, bare actor {float(bare_cpu):.2f} s")
    if out.returncode:
        print(out.stderr[-3000:])


if __name__ == "__main__":
    main()
