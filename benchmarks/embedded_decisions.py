"""Decisions on the embedded default: accuracy, order-invariance and latency.

Runs the demo's ``categorize`` decision (``ray_orch.demo.build_workflow``) for every
inquiry of a labelled set through the attempt path's own call
(``ray_orch.policy.decide_local.decide_locally``), each inquiry with the condition's keys in
their order and shuffled. It also runs the guide's workflow (``examples/02``: no key
descriptions; each route described by the goals of the agents of the tasks it leads to,
``describe_routes``).

Latency is that of each inquiry's first decision; the encoder keeps embeddings it
computed, so the guide's pass, whose message the demo's pass already encoded, mostly
shows the cost of the rest of the call.

Sets: ``dev`` and ``held_out`` (``decision_set.py``), and ``extra``, ``helper``, ``h3``,
``h4``, ``h5`` (``decision_sets.json``, which says how each was written and used).

Run: ``python benchmarks/embedded_decisions.py [--split NAME|all] [--fallback]``;
``--fallback`` measures the language-model likelihood scoring used when the sentence
model is not installed (it starts an ``EmbeddedServer`` in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
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
from ray_orch.policy.decide import best_route, route_glosses, subject_of
from ray_orch.policy.decide_local import decide_locally, score_described

_SETS = Path(__file__).resolve().parent / "decision_sets.json"


def labelled(split: str) -> list[tuple[str, str]]:
    """The inquiries of one split (or of all), as ``(inquiry, route)``."""
    named = {"dev": DEV, "held_out": HELD_OUT}
    named.update({name: [tuple(row) for row in rows]
                  for name, rows in json.loads(_SETS.read_text()).items() if name != "about"})
    if split == "all":
        return [row for rows in named.values() for row in rows]
    return named[split]


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


async def _decide(address: str | None, task: Task) -> tuple[str, float]:
    """The route and seconds of one decision: by the attempt path's own call
    (``decide_locally``), or, for the fallback, by ``score_described`` on ``address``."""
    parts = task_prompt(task, None, {})
    started = time.perf_counter()
    if address is None:
        answer, _ = await decide_locally(task.agent, task, parts, [])
        route = json.loads(answer)["decision"]
    else:
        keys = route_keys(task.condition or {})
        glosses = route_glosses(parts.description, keys)
        scores = await score_described(address, subject_of(parts.description, glosses),
                                       glosses, task._route_descriptions)
        route = best_route(scores)
    return route, time.perf_counter() - started


def _shuffled(task: Task, rng: random.Random) -> Task:
    """The same decision with its condition's keys in another order."""
    items = list((task.condition or {}).items())
    rng.shuffle(items)
    again = copy.copy(task)
    again.condition = dict(items)
    return again


async def run(split: str, fallback: bool) -> None:
    data = labelled(split)
    rng = random.Random(7)
    server = EmbeddedServer() if fallback else None
    address = server.address if server is not None else None
    method = ("language-model likelihoods (fallback)" if fallback
              else "sentence embeddings + route glossary (default)")
    print(f"{method}; {len(data)} inquiries ({split})")
    try:
        for style in ("demo", "guide"):
            right = same = 0
            seconds: list[float] = []
            for inquiry, label in data:
                tasks = (build_workflow(inquiry)[0] if style == "demo"
                         else guide_workflow(inquiry))
                build_graph(name_tasks(tasks), "workflow", has_default_agent=True)
                task = tasks["categorize"]
                route, took = await _decide(address, task)
                again, _ = await _decide(address, _shuffled(task, rng))
                seconds.append(took)  # the shuffled one reuses the message's embedding
                right += route == label
                same += route == again
            seconds.sort()
            print(f"{style:>5} description: {right}/{len(data)} right "
                  f"({100 * right / len(data):.0f}%), same route with keys shuffled "
                  f"{same}/{len(data)}; decision latency median "
                  f"{statistics.median(seconds) * 1000:.1f} ms, p90 "
                  f"{seconds[int(0.9 * (len(seconds) - 1))] * 1000:.1f} ms, "
                  f"max {seconds[-1] * 1000:.1f} ms (the first includes loading)")
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="all",
                        choices=("dev", "held_out", "extra", "helper", "h3", "h4", "h5",
                                 "all"))
    parser.add_argument("--fallback", action="store_true",
                        help="measure the language-model fallback instead")
    args = parser.parse_args()
    asyncio.run(run(args.split, args.fallback))


if __name__ == "__main__":
    main()
