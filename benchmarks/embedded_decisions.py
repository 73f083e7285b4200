"""Decisions on the embedded model: accuracy, order-invariance and latency.

Runs the demo's ``categorize`` decision (``ray_orch.demo.build_workflow``) for every
inquiry of ``benchmarks/decision_set.py`` through the same scoring the attempt path
uses (``ray_orch.policy.decide``), on an ``EmbeddedServer`` in this process, each
inquiry with the condition's keys in their order and shuffled. It also runs the guide's
workflow (``examples/02``: no key descriptions; each route described by the goals of the
agents of the tasks it leads to, ``describe_routes``).

Run: ``python benchmarks/embedded_decisions.py [--split dev|held_out|all]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decision_set import DEV, HELD_OUT

from ray_orch import Agent, Task
from ray_orch.core.prompt import task_prompt
from ray_orch.core.routing import route_keys
from ray_orch.demo import build_workflow
from ray_orch.engine.graph import build_graph, name_tasks
from ray_orch.model.embedded import EmbeddedServer
from ray_orch.policy.decide import route_glosses, score_described, subject_of


def guide_workflow(inquiry: str) -> dict[str, Task]:
    """``examples/02``'s workflow for an inquiry (its agents, descriptions and routes)."""
    support = Agent(role="Support", goal="Handle inquiries")
    tech = Agent(role="Technical", goal="Solve technical issues")
    billing = Agent(role="Billing", goal="Handle payments")
    escalation = Agent(role="Escalation", goal="Handle complex cases")
    return {
        "categorize": Task(description=f"Categorize customer inquiry: {inquiry!r}",
                           agent=support, task_type="decision",
                           condition={"technical": ["tech_support"],
                                      "billing": ["billing_support"],
                                      "complex": ["escalate"], "simple": ["quick_response"]}),
        "tech_support": Task(description=f"Resolve technical issue: {inquiry!r}", agent=tech,
                             task_type="decision",
                             condition={"resolved": ["send_confirmation"],
                                        "needs_escalation": ["escalate"]}),
        "billing_support": Task(description=f"Handle billing inquiry: {inquiry!r}",
                                agent=billing, next_tasks=["send_confirmation"]),
        "escalate": Task(description=f"Handle complex case: {inquiry!r}", agent=escalation,
                         next_tasks=["send_confirmation"]),
        "quick_response": Task(description=f"Send automated response to: {inquiry!r}",
                               agent=support, next_tasks=["send_confirmation"]),
        "send_confirmation": Task(description="Send resolution confirmation", agent=support),
    }


async def _decide(address: str, task: Task, keys: list[str]) -> tuple[str, float]:
    description = task_prompt(task, None, {}).description
    glosses = route_glosses(description, keys)
    started = time.perf_counter()
    scores = await score_described(address, subject_of(description, glosses), glosses,
                                   task._route_descriptions)
    return max(sorted(scores), key=lambda k: scores[k]), time.perf_counter() - started


async def run(split: str) -> None:
    data = {"dev": DEV, "held_out": HELD_OUT, "all": DEV + HELD_OUT}[split]
    rng = random.Random(7)
    with EmbeddedServer() as server:
        address = server.address
        print(f"embedded model: {server.model_name}, threads={server.threads}, "
              f"load {server.load_seconds:.2f} s; {len(data)} inquiries ({split})")
        for style in ("demo", "guide"):
            right = same = 0
            seconds: list[float] = []
            for inquiry, label in data:
                tasks = (build_workflow(inquiry)[0] if style == "demo"
                         else guide_workflow(inquiry))
                build_graph(name_tasks(tasks), "workflow", has_default_agent=True)
                task = tasks["categorize"]
                keys = route_keys(task.condition or {})
                shuffled = keys[:]
                rng.shuffle(shuffled)
                route, took = await _decide(address, task, keys)
                again, took2 = await _decide(address, task, shuffled)
                seconds += [took, took2]
                right += route == label
                same += route == again
            seconds.sort()
            print(f"{style:>5} description: {right}/{len(data)} right "
                  f"({100 * right / len(data):.0f}%), same route with keys shuffled "
                  f"{same}/{len(data)}; decision latency median "
                  f"{statistics.median(seconds):.3f} s, p90 "
                  f"{seconds[int(0.9 * (len(seconds) - 1))]:.3f} s, max {seconds[-1]:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "held_out", "all"), default="all")
    asyncio.run(run(parser.parse_args().split))


if __name__ == "__main__":
    main()
