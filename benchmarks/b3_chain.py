"""B3 (W3): a sequential chain of 20 calls of 50 ms, each given the previous output.
Ideal 1.00 s; prints makespan and overhead per step (target <= 5 ms). With ``agents`` > 1
the steps go round the agents (researcher, writer, editor, ...), as in the guide.
Usage: b3_chain.py [repeat] [agents]"""

from __future__ import annotations

import sys

from _common import fmt, start_ray, timed

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer

STEPS = 20


def workflow(stub: StubLLMServer, agents: int) -> Process:
    crew = [Agent(role=f"Writer {i}", goal="Write", llm=stub.llm) for i in range(agents)]
    tasks = {f"step{i}": Task(description=f"Step {i}: improve the text", agent=crew[i % agents])
             for i in range(STEPS)}
    return Process(tasks=tasks, agents=crew, name="b3", metrics=False)


def main(repeat: int = 5, agents: int = 1) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.05) as stub:
        workflow(stub, agents).sequential()
        ours, runs = timed(lambda: workflow(stub, agents).sequential(), repeat)
        http = [r.t_end - r.t_start for r in stub.requests[-STEPS:]]
    ideal = STEPS * 0.05
    crew = f"{agents} agent{'s' if agents > 1 else ''}"
    print(f"B3 ({crew}): ray-orch {fmt(ours)} (runs {[round(r, 3) for r in runs]})"
          f"  ideal {fmt(ideal)}"
          f"  overhead/step {(ours - ideal) / STEPS * 1000:.1f} ms"
          f"  (stub time/step {sum(http) / len(http) * 1000:.1f} ms)")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
